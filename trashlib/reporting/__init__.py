"""The report: the metrics store the notebooks write, the papermill runner, the wrap-up page and the sentences and
tables it is made of."""
