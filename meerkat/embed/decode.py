"""The one decode -> resize path, used by preprocess and baked into the exported model.

Sharing this function is what makes served predictions equal the training-time ones.
Normalisation to the backbone's input range lives with the backbone (backbones.py).
"""

import tensorflow as tf


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
