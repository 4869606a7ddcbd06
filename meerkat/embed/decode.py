"""The one decode -> resize path, used by preprocess and baked into the exported model; and, for a
file that breaks a batch, why it does not decode.

Sharing this function is what makes served predictions equal the training-time ones.
Normalisation to the backbone's input range lives with the backbone (backbones.py).
"""

import re

import tensorflow as tf

from meerkat.samples.imagefiles import Unreadable, read_for_model


def decode_and_resize(image_bytes, size: int):
    """Encoded image (JPEG, PNG, GIF, BMP) -> float32 [size, size, 3] RGB in [0, 255].

    Grayscale and RGBA become RGB; an animated GIF contributes its first frame; the crop is
    stretched to a square, as DeepMeerkat's original pipeline did.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image = tf.image.resize(image, [size, size], method="bilinear")
    image.set_shape([size, size, 3])
    return image


def decode_batch(image_bytes, size: int):
    """A [N] string tensor of encoded crops of any sizes -> float32 [N, size, size, 3]."""
    return tf.map_fn(
        lambda b: decode_and_resize(b, size),
        image_bytes,
        fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
    )


def decode_error(path) -> str:
    """Why a file that passed imagefiles' checks failed in TensorFlow, found by decoding it alone.

    preprocess and predict decode whole batches in one graph, whose error does not say which file
    failed or why; this gives the skip reason that both list.
    """
    try:
        decode_and_resize(read_for_model(path), 8)  # the size cannot change whether it decodes
    except Unreadable as e:
        return str(e)  # it changed since it was read
    except tf.errors.OpError as e:
        # "{{function_node ...}} Invalid JPEG data ... [Op:DecodeImage]" -> "Invalid JPEG data ..."
        message = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", e.message.splitlines()[0]).strip()
        return f"cannot decode: {message}"
    return "failed in the pipeline but decodes alone; rerun with --debug"
