"""Pictures of a model's inside (alexnet-viz): architecture, conv1 filters, feature maps,
embeddings, predictions and a batch as the model sees it.

Each module builds a matplotlib Figure sized in pixels (alexnet.plots.figure_pixels) from plain
arrays and returns it; alexnet/cli/viz.py writes it atomically with the data behind it.
"""
