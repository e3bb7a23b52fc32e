"""On-device speech emotion recognition: numpy MFCC frontend, int8 TFLite model, streaming classifier.

Importing this package loads numpy only; the interpreter, soundfile and the sinks load
when they are used.
"""

__version__ = "0.1.0"
