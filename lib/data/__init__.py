"""Data: audio on disk to log-mel features.

Owns the datasets in the FSDnoisy18k layout (loading, subsets, the rules for bad input), the
feature presets and the feature cache, the built-in generator, the downloaders and converters
(FSDnoisy18k, ESC-50), atomic writes and the project's default folders.

May import: nothing else of aclaudio. The bottom layer.
"""
