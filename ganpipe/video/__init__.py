"""Video upscaling with PyAV (FFmpeg's libraries in-process; never an external program,
never torch): :mod:`~ganpipe.video.probe` (what a file is), :mod:`~ganpipe.video.encoding`
(the encoder and its settings), :mod:`~ganpipe.video.convert` (frames to arrays and the
model over batches of them), :mod:`~ganpipe.video.streams` (the streams, tags and chapters
carried over), :mod:`~ganpipe.video.output` (the output container, or a folder of PNG
frames, written atomically), :mod:`~ganpipe.video.transcode` (the decode -> model ->
encode pipeline), :mod:`~ganpipe.video.select` (which inputs are videos, their output
names) and :mod:`~ganpipe.video.job` (one video of a batch, as its report record).
docs/video.md says what is kept and what is not (yet).

``ganpipe upscale`` routes the videos of its input here (:mod:`ganpipe.upscale.plan`).
"""
