"""Stage 4: backbone + head -> one SavedModel that takes JPEG bytes and returns the softmax.

The model is a TF1-style SavedModel with constants only, so that both loaders work unchanged:
- TF2: tf.saved_model.load(dir).signatures["serving_default"](image_bytes=...) -> scores, prediction, label;
- DeepMeerkat's TF1 loader: tf.compat.v1.saved_model.loader.load(sess, ["serve"], dir), then
  sess.run("final_ops/softmax:0", {"Placeholder:0": [jpeg_bytes, ...]}).
Decode and resize inside the graph are decode.decode_batch, the function preprocess used.

The same head and backbone give a byte-identical saved_model.pb, wherever, by whom and after what
it is exported: nothing of the host (its name, a pid, an absolute path) is inside it, and no name
numbered by a process-wide counter of Keras or TensorFlow, which would differ between a cold run, a
resumed one and one on a warm embedding cache (they trace other functions and build other layers
before they export).
"""

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meerkat.core import atomic
from meerkat.embed.embedder import Embedder

log = logging.getLogger(__name__)


def _frozen_logits_graph(embedder: Embedder, head):
    """GraphDef of image_bytes [N] -> logits [N, 2], variables folded into constants."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2_as_graph

    from meerkat.embed.decode import decode_batch

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def logits(image_bytes):
        return head(embedder.embed_here(decode_batch(image_bytes, embedder.size)), training=False)

    with _fresh_layer_names([embedder.model, head]):
        concrete = logits.get_concrete_function()
    # The GraphDef as frozen, not the graph of the function built from it: that rebuild copies the
    # while loop's ops in an order that varies between processes, so the bytes would too.
    _, graph_def = convert_variables_to_constants_v2_as_graph(concrete)
    return graph_def, concrete.inputs[0].name, concrete.outputs[0].name


@contextmanager
def _fresh_layer_names(models) -> Iterator[None]:
    """Trace the models with their auto-named layers named as in a process that built nothing else.

    Keras numbers the names it makes up (dense, dense_1, ...) with process-wide counters, and those
    names are the graph's name scopes: a head built after another in one process would be exported
    as head/dense_2/MatMul. Each auto-named layer gets its number again, in the models' own order.
    """
    from keras.src.utils.naming import to_snake_case

    counts: dict[str, int] = {}
    renamed = {}  # id -> (layer, its own name), each layer once
    for layer in _layers(models):
        prefix = to_snake_case(type(layer).__name__)
        if id(layer) in renamed or not re.fullmatch(rf"{re.escape(prefix)}(_\d+)?", layer.name):
            continue  # named by its author: it carries no counter
        renamed[id(layer)] = layer, layer.name
        number = counts.get(prefix, 0)
        counts[prefix] = number + 1
        layer.name = f"{prefix}_{number}" if number else prefix
    try:
        yield
    finally:
        for layer, name in renamed.values():
            layer.name = name


def _layers(models):
    for model in models:
        yield model
        yield from _layers(getattr(model, "layers", ()))


def export_model(embedder: Embedder, head, labels: list[str], model_dir) -> Path:
    """Write the SavedModel to `model_dir` atomically, with dict.txt beside it and as an asset."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph_def, input_name, output_name = _frozen_logits_graph(embedder, head)
    model_dir = Path(model_dir)
    with atomic.atomic_dir(model_dir, "the exported model") as tmp:
        dict_txt = tmp / "dict.txt"
        dict_txt.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        graph = tf.Graph()
        with graph.as_default():
            image_bytes = v1.placeholder(tf.string, [None], name="Placeholder")  # DeepMeerkat feeds Placeholder:0
            keys = v1.placeholder(tf.string, [None], name="key")
            (logits,) = tf.import_graph_def(
                graph_def, input_map={input_name: image_bytes}, return_elements=[output_name], name="model"
            )
            with v1.name_scope("final_ops"):
                scores = tf.nn.softmax(logits, name="softmax")
            prediction = tf.argmax(scores, axis=1, output_type=tf.int64, name="prediction")
            label = tf.gather(tf.constant(labels), prediction, name="label")
            key_out = tf.identity(keys, name="key_out")
            asset = tf.constant(str(dict_txt), name="dict_txt")
            v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset)

            info = v1.saved_model.utils.build_tensor_info
            outputs = {"scores": info(scores), "prediction": info(prediction), "label": info(label)}
            signature = v1.saved_model.signature_def_utils.build_signature_def
            method = v1.saved_model.signature_constants.PREDICT_METHOD_NAME
            signatures = {
                "serving_default": signature({"image_bytes": info(image_bytes)}, outputs, method),
                "predict_with_key": signature(
                    {"image_bytes": info(image_bytes), "key": info(keys)}, {**outputs, "key": info(key_out)}, method
                ),
            }
            saved = tmp / "saved"
            builder = v1.saved_model.Builder(str(saved))
            with v1.Session(graph=graph) as sess:
                builder.add_meta_graph_and_variables(
                    sess,
                    [v1.saved_model.tag_constants.SERVING],
                    signature_def_map=signatures,
                    assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
                    strip_default_attrs=True,
                )
            builder.save()
        # The builder wants a fresh folder; move its contents up beside dict.txt.
        for item in saved.iterdir():
            item.rename(tmp / item.name)
        saved.rmdir()
        _make_portable(tmp / "saved_model.pb", asset.op.name)
    log.info("Exported SavedModel to %s", model_dir)
    return model_dir


def _make_portable(pb: Path, asset_node: str) -> None:
    """Rewrite saved_model.pb so that no path and no TensorFlow function counter is left in it.

    The builder leaves the path it copied dict.txt from (the temporary folder: output path, host
    name, pid) as the asset's value; loaders take the asset from assets/ by the name the SavedModel
    records for it, so its file name takes the path's place.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    for graph in model.meta_graphs:
        for node in graph.graph_def.node:
            if node.name == asset_node:
                node.attr["value"].tensor.string_val[:] = [b"dict.txt"]
        _number_functions_in_graph_order(graph.graph_def)
    pb.write_bytes(model.SerializeToString(deterministic=True))


def _number_functions_in_graph_order(graph_def) -> None:
    """Number the functions that nodes name in their debug info by first mention, not by TensorFlow's counter.

    Freezing lowers the decode loop (tf.map_fn) into plain nodes, so the graph has no function
    library and no function-valued attribute; but each node inlined from the loop's cond or body
    records that function's name, e.g. map_while_cond_1987, where 1987 counts every function the
    process traced before. In node order, which follows the graph's structure, the first function
    mentioned becomes ..._0, the next ..._1.
    """
    numbered: dict[str, str] = {}
    for node in graph_def.node:
        names = node.experimental_debug_info.original_func_names
        for name in names:
            if name not in numbered:
                numbered[name] = f"{re.sub(r'_[0-9]+$', '', name)}_{len(numbered)}"
        names[:] = [numbered[name] for name in names]
