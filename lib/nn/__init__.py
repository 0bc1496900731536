"""Networks: the encoders, the projection head and the supervised baseline CNN, augmentation on
batches of patches, and the losses.

Tensors in, tensors out: no files, no pandas, so that a user who wants the loss or a model
needs torch and numpy only.

May import: nothing else of aclaudio.
"""
