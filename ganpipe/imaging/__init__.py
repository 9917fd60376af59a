"""Images as arrays, torch-free (numpy, Pillow, zlib, tifffile): :mod:`~ganpipe.imaging.picture`
(a decoded image and what it carries), :mod:`~ganpipe.imaging.sniff` (formats by content,
folder listing), :mod:`~ganpipe.imaging.decode` and :mod:`~ganpipe.imaging.encode`, and the
16-bit PNG and TIFF codecs Pillow lacks (:mod:`~ganpipe.imaging.png16`,
:mod:`~ganpipe.imaging.tiff16`). Used by ``ganpipe upscale`` (:mod:`ganpipe.upscale`)."""
