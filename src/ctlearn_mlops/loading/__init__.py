"""Fast input pipeline: a parallel reader of DL1 images, an image cache, and the Keras loader over both.

Targets dl1-data-handler 0.14.9 (``DLImageReader``) and ctlearn 0.10.4
(``DLDataLoader``): the stock classes index the examples and make the labels;
what is replaced is how images are read and mapped, and who does it.
"""
