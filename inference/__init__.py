"""The LiverRead model as a plain Python package: NIfTI I/O, synthetic phantoms,
preprocessing, network, training, ensemble prediction and saliency.

Never imports Django or ``readerstudy``: the Celery task in
``readerstudy.predictions`` is the only bridge.
"""
