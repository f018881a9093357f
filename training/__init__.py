"""Offline model work: data, training, calibration, export and evaluation.

Nothing at run time imports this package; it produces the files in models/ that the
browser, the edge and the cloud load.
"""
