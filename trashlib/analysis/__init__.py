"""Looking at the data: dataset statistics, mislabel candidates, and an interactive browser for JupyterLab."""
