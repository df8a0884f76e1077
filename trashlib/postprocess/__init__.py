"""Post-processing of stored probabilities: ensembles, DenseCRF, the consensus repaint, the recipes that chain them and
05's stages."""
