"""Analysis of trained runs: what the latent space holds and how the model sounds.

One module per job, each a library function that the ``trainer`` CLI calls and tests call directly:

===============  ==========================================================================================
module           job
===============  ==========================================================================================
``latent``       load a run, encode a corpus (mu / logvar), latent diagnostics, 2D maps (``trainer analyze``)
``generate``     reconstructions, prior samples, interpolations as WAV + spectrogram grids (``trainer generate``)
``cluster``      GMM with BIC, TensorBoard projector, centroids for pad anchors (``trainer cluster``)
``axes``         named knob directions from descriptors, verified by decoded sweeps (``trainer axes``)
``knobs``        sweep anchors (mean, encoded, pads, random) and per-sweep rho / cross-talk matrix for ``axes``
``reference``    the knob descriptors written afresh on librosa, an independent check of :mod:`trainer.descriptors`
``evaluate``     held-out round trip, realism, diversity, memorisation (``trainer evaluate``)
``sweep``        one model per latent size, PCA share of the top components (``trainer sweep-latent``)
``plots``        matplotlib (Agg) figures and a self-contained HTML scatter
``reports``      atomic JSON / Markdown / WAV writing
===============  ==========================================================================================

Outputs go to ``RUN/analysis/<job>/`` unless an explicit folder is given.
"""
