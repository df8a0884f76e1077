"""The competition data layer: which data root, COCO loading and validation, label-map rasterising, the
cached COCO dataset, label-map datasets (copy-paste, pseudo labels) and the training set of a config."""
from trashlib.data.coco import DatasetError, Problem, load_coco, validate_coco
from trashlib.data.dataset import TrashDataset, available_splits
from trashlib.data.embedded import resolve_data_root
from trashlib.data.images import read_image
from trashlib.data.labelmaps import LabelMapDataset, read_label_map, write_label_maps
from trashlib.data.raster import rasterize
from trashlib.data.sources import ConcatSource, build_train_dataset, train_fingerprint

__all__ = ["ConcatSource", "DatasetError", "LabelMapDataset", "Problem", "TrashDataset", "available_splits",
           "build_train_dataset", "load_coco", "rasterize", "read_image", "read_label_map", "resolve_data_root",
           "train_fingerprint", "validate_coco", "write_label_maps"]
