"""The LR degradation models of ``degradation=``: BI (bicubic), BD, DN and Real-ESRGAN's.

Pure torch functions over batches, on the batch's device. The random ones take one seed per
sample (:func:`~sr_lightning.data.degradations.seeding.sample_seeds`), so a sample's LR is a
function of the run's seed and the sample's position, never of a global RNG.
"""
