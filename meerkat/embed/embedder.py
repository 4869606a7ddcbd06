"""A frozen backbone as a function from decoded crops to embeddings, on one device or spread over several."""

from functools import lru_cache

from meerkat.embed.backbones import BackboneSpec, build


class Embedder:
    """A frozen backbone as a function: float32 RGB [N, size, size, 3] in [0, 255] -> [N, dim].

    With several devices (GPUs), each holds a copy of the backbone and gets an equal slice of
    every batch; TensorFlow runs the slices at the same time. `embed_here` is the one-device form
    that the exported model is built from, so the SavedModel is not tied to any device. The copies
    for the other devices are built when `embed` first needs them: an export needs none.
    """

    def __init__(self, spec: BackboneSpec, devices: list[str] | None = None):
        import tensorflow as tf

        from meerkat.embed.devices import compute_devices

        self.spec = spec
        self.size = spec.arch.image_size
        self.devices = devices or compute_devices()
        with tf.device(self.devices[0]):
            self.models = [build(spec)]
        self.model = self.models[0]
        signature = [tf.TensorSpec([None, self.size, self.size, 3], tf.float32)]
        self._embed_graph = tf.function(self._embed, input_signature=signature)

    def embed(self, images):
        """Float32 RGB [N, size, size, 3] in [0, 255] -> embeddings [N, dim], over every device."""
        import tensorflow as tf

        for device in self.devices[len(self.models) :]:
            with tf.device(device):
                self.models.append(build(self.spec))
        return self._embed_graph(images)

    def embed_here(self, images):
        import tensorflow as tf

        return tf.cast(self.model(self.spec.arch.normalize(images), training=False), tf.float32)

    def _embed(self, images):
        import tensorflow as tf

        n = len(self.models)
        if n == 1:
            return self.embed_here(images)
        total = tf.shape(images)[0]

        def spread():
            sizes = tf.concat([tf.fill([n - 1], total // n), [total - (n - 1) * (total // n)]], 0)
            outputs = []
            for device, model, part in zip(self.devices, self.models, tf.split(images, sizes, num=n), strict=True):
                with tf.device(device):
                    outputs.append(tf.cast(model(self.spec.arch.normalize(part), training=False), tf.float32))
            return tf.concat(outputs, 0)

        # A batch smaller than the device count (the last one) would give some device an empty slice.
        return tf.cond(total >= n, spread, lambda: self.embed_here(images))


@lru_cache(maxsize=2)
def embedder_for(spec: BackboneSpec) -> Embedder:
    """The Embedder of `spec`, built once per process: building a backbone takes seconds."""
    return Embedder(spec)
