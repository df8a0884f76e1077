"""Run folders: where a training run lives, what it writes there (config, metrics, provenance, the final
evaluation per image, checkpoints), and `Run`, the read side that training, inference, scoring and the
notebooks share.

`folder` names, guards and reads run folders (re-exported here: `from trashlib.runs import Run`);
`checkpoint` writes and reads the weights and training state.
"""
from trashlib.runs.folder import (CONFIG_FILE, ENV_FILE, EVAL_IMAGES_FILE, EvalImages, FINISHED_FILE, METRICS_FILE,
                                  NAME_MAX, RUN_FILES, Run, best_run, check_run_folder, clear_run, environment,
                                  find_runs, git_state, list_runs, read_eval_images, read_metrics, remove_temporary,
                                  resolve_run, run_dir_for, run_name, run_name_problem, runs_dir, save_eval_images)

__all__ = ["CONFIG_FILE", "ENV_FILE", "EVAL_IMAGES_FILE", "EvalImages", "FINISHED_FILE", "METRICS_FILE", "NAME_MAX",
           "RUN_FILES", "Run", "best_run", "check_run_folder", "clear_run", "environment", "find_runs", "git_state",
           "list_runs", "read_eval_images", "read_metrics", "remove_temporary", "resolve_run", "run_dir_for",
           "run_name", "run_name_problem", "runs_dir", "save_eval_images"]
