"""The one decode -> resize path, used by preprocess and baked into the exported model; and, for a
file that breaks a batch, why it does not decode.

Sharing this function is what makes served predictions equal the training-time ones.
Normalisation to the backbone's input range lives with the backbone (backbones.py).
"""

import re

import tensorflow as tf

from meerkat.samples.imagefiles import Unreadable, read_for_model

GIF_EXTENSION, GIF_IMAGE, GIF_TRAILER = 0x21, 0x2C, b";"


def first_frame(image_bytes):
    """A GIF's bytes up to the end of its first image, then the trailer; any other image as it is.

    tf.io.decode_image decodes every frame of a GIF before it returns the first (giflib's
    DGifSlurp), even with expand_animations=False: 600 frames of 2000x2000 took 3.1 GB. The
    first image's blocks alone decode to the same pixels, as no later frame changes the first.
    The cut is found by walking the blocks' length bytes, never by decoding; a damaged GIF is
    cut where its blocks stop making sense, and the decoder says what is wrong with it.
    """
    data = image_bytes

    def cut():
        b = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
        n = tf.size(b)

        def at(i):  # past the end reads the last byte, so a short file ends the walk, never fails it
            return tf.gather(b, tf.minimum(i, n - 1))

        def color_table(flags):
            return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(2, flags % 8), 0)

        def past_sub_blocks(pos):  # each sub-block is its length byte and that many bytes; 0 ends them
            (end,) = tf.while_loop(lambda p: (p < n) & (at(p) > 0), lambda p: (p + at(p) + 1,), (pos,))
            return end + 1

        def past_block(pos, _):
            is_image = at(pos) == GIF_IMAGE  # descriptor (10 bytes), local colour table, LZW code size
            return past_sub_blocks(tf.where(is_image, pos + 11 + color_table(at(pos + 9)), pos + 2)), is_image

        def more(pos, image_done):
            return ~image_done & (pos < n) & ((at(pos) == GIF_EXTENSION) | (at(pos) == GIF_IMAGE))

        start = 13 + color_table(at(10))  # header, logical screen, global colour table
        end, _ = tf.while_loop(more, past_block, (start, tf.constant(False)))
        return tf.strings.substr(data, 0, tf.minimum(end, n)) + GIF_TRAILER

    return tf.cond(tf.strings.substr(data, 0, 3) == b"GIF", cut, lambda: data)


def decode_and_resize(image_bytes, size: int):
    """Encoded image (JPEG, PNG, GIF, BMP) -> float32 [size, size, 3] RGB in [0, 255].

    Grayscale and RGBA become RGB; of an animated GIF only the first frame is decoded; the crop is
    stretched to a square, as DeepMeerkat's original pipeline did.
    """
    image = tf.io.decode_image(first_frame(image_bytes), channels=3, expand_animations=False)
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
