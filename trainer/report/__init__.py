"""Reports after training and evaluation: the document, plots, metric sets and the model card."""
