"""Import TensorFlow once, without its C++ start-up chatter.

TensorFlow 2.21 writes absl INFO/ERROR lines (oneDNN notice, CUDA probing on CPU-only machines) straight to
file descriptor 2 while it loads, ignoring TF_CPP_MIN_LOG_LEVEL; in a notebook they fill the first cell that
imports it. Python exceptions still propagate.
"""
import os
import sys


def import_tf():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(null, 2)
        import tensorflow as tf
        tf.config.list_physical_devices()  # the CUDA probe happens here, still silenced
        tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when predicting on several shapes
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return tf
