"""Lightning training: the classifier module, callbacks and the ``train`` task."""
