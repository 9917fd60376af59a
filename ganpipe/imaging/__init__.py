"""Images as arrays, torch-free (numpy, Pillow, tifffile, imagecodecs):
:mod:`~ganpipe.imaging.picture` (a decoded image and what it carries),
:mod:`~ganpipe.imaging.sniff` (formats by content, folder listing),
:mod:`~ganpipe.imaging.decode` and :mod:`~ganpipe.imaging.encode` (16-bit PNGs through
libpng, by imagecodecs), and the 16-bit TIFFs Pillow lacks (:mod:`~ganpipe.imaging.tiff16`).
Used by ``ganpipe upscale`` (:mod:`ganpipe.upscale`)."""
