"""Offline default data: the shapes world, scikit-learn digits, shipped photos and pydoc text.

Everything here is generated or loaded from installed packages, so the demo and the tests never
touch the network; train / held-out splits are fixed so evaluation data never leaks into training.
"""
