"""The competition data layer: COCO loading and validation, label-map rasterising, the cached dataset."""
from trashlib.data.coco import DatasetError, Problem, load_coco, validate_coco
from trashlib.data.images import read_image
from trashlib.data.dataset import TrashDataset, available_splits
from trashlib.data.raster import rasterize

__all__ = ["DatasetError", "Problem", "TrashDataset", "available_splits", "load_coco", "rasterize",
           "read_image", "validate_coco"]
