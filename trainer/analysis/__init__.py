"""Analysis of trained runs: what the latent space holds and how the model sounds.

One module per job, each a library function that the ``trainer`` CLI calls and tests call directly; the jobs
share the run services of ``run`` and the writers of ``plots`` and ``reports``:

===============  ==========================================================================================
module           job
===============  ==========================================================================================
``run``          a trained run and its services: load, ingest a corpus, encode / decode, audio, descriptors
``latent``       latent diagnostics of an encoded corpus and its 2D maps (``trainer analyze``)
``generate``     reconstructions, prior samples, interpolations as WAV + spectrogram grids (``trainer generate``)
``cluster``      GMM with BIC, TensorBoard projector, centroids for pad anchors (``trainer cluster``)
``knob_check``   the shaping knobs swept from the model's sounds and validated (``trainer axes``)
``axes``         named latent knob directions from descriptors, verified by decoded sweeps (``trainer axes --latent``)
``knobs``        sweep anchors (mean, encoded, pads, random), per-sweep rho, cross-talk matrix and effect sizes
``reference``    the knob descriptors written afresh on librosa, an independent check of :mod:`trainer.descriptors`
``evaluate``     held-out round trip, realism, diversity, memorisation (``trainer evaluate``)
``sweep``        one model per latent size, PCA share of the top components (``trainer sweep-latent``)
``plots``        matplotlib (Agg) figures and a self-contained HTML scatter
``reports``      atomic JSON / Markdown / WAV writing
``commands``     the analysis subcommands' flags, bound to these functions (``trainer.cli`` adds them)
===============  ==========================================================================================

Outputs go to ``RUN/analysis/<job>/`` unless an explicit folder is given.
"""
