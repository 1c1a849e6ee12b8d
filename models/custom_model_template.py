"""Template: train your own Keras architecture through the task config, without touching core code.

1. Copy this file, e.g. ``cp models/custom_model_template.py models/my_cnn.py``,
   and rename the class (``CustomCNN`` -> ``MyCNN``).
2. Build any Keras network in ``__init__``; keep the input named "input" and
   finish with ``build_fully_connect_head`` so the outputs are named after the
   task, as CTLearn's training and our predict tool expect.
3. Name it in the task config:

   .. code-block:: yaml

       Project:
         custom_model_file: models/my_cnn.py
       TrainCTLearnModel:
         model_type: MyCNN
       MyCNN:                      # its options, checked like any other section
         filters: [16, 32, 64, 64]
         head_layers: {energy: [64, 1]}
         head_activation_function: {energy: relu}

Every trait tagged ``config=True`` becomes an option of the class' section
(``python scripts/train_model.py --config ... --help-all`` lists them after the
file is named).  A classmethod ``check_config(tasks, section)`` raising
``ValueError`` lets the model refuse a task before the run starts (the
training tool reports it as a config error naming the section).  Use only
standard Keras layers, or register custom ones with
``keras.saving.register_keras_serializable``, so the saved model loads again.
"""

import keras
import tensorflow as tf
from ctapipe.core.traits import Bool, Int, List
from ctlearn.core.model import CTLearnModel, build_fully_connect_head

__all__ = ["CustomCNN", "MirrorMean", "MirrorViews", "SignedLog1p"]


@keras.saving.register_keras_serializable(package="CustomCNN")
class SignedLog1p(keras.layers.Layer):
    """sign(x) log(1 + |x|) on the chosen channels, the others unchanged.

    Charges span 50 to several thousand p.e. while peak times stay within a few
    ns; compressing the charge keeps bright images from dominating the first
    convolutions.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]

    def call(self, inputs):
        chosen = tf.reduce_sum(tf.one_hot(self.channels, depth=tf.shape(inputs)[-1], dtype=inputs.dtype), axis=0)
        compressed = tf.sign(inputs) * tf.math.log1p(tf.abs(inputs))
        return chosen * compressed + (1 - chosen) * inputs

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="CustomCNN")
class MirrorViews(keras.layers.Layer):
    """Outside training, the batch followed by its left-right, up-down and both-ways mirrors (4x the batch)."""

    def call(self, inputs, training=None):
        if training:
            return inputs
        return tf.concat([inputs, tf.reverse(inputs, [2]), tf.reverse(inputs, [1]), tf.reverse(inputs, [1, 2])], 0)


@keras.saving.register_keras_serializable(package="CustomCNN")
class MirrorMean(keras.layers.Layer):
    """Outside training, the mean of the outputs of the four mirrors made by `MirrorViews`."""

    def call(self, inputs, training=None):
        if training:
            return inputs
        views = tf.reshape(inputs, tf.concat([[4, -1], tf.shape(inputs)[1:]], 0))
        return tf.reduce_mean(views, axis=0)


class CustomCNN(CTLearnModel):
    """Plain convolution blocks ending in Flatten, which keeps where the image lies in the camera."""

    filters = List(
        Int(min=1), default_value=[16, 32, 64, 64], help="Filters of each conv + max-pool block.",
    ).tag(config=True)

    dropout = Bool(default_value=False, help="Dropout (0.3) before the head.").tag(config=True)

    mirror_augmentation = Bool(
        default_value=False,
        help="While training, mirror each image left-right and/or up-down at random (mirror symmetries of the "
        "camera plane; a no-op at prediction). Only for tasks whose label a mirror keeps: type and energy.",
    ).tag(config=True)

    mirror_average = Bool(
        default_value=False,
        help="At validation and prediction, average the outputs over the image and its three mirrors "
        "(4x the prediction time). Only for tasks whose label a mirror keeps: type and energy.",
    ).tag(config=True)

    log_channels = List(
        Int(min=0), default_value=[],
        help="Indices of the input channels (order of DLImageReader.channels) to compress with sign(x) log(1 + |x|), "
        "e.g. [0] for the charge of [cleaned_image, cleaned_relative_peak_time].",
    ).tag(config=True)

    @classmethod
    def check_config(cls, tasks, section):
        moved_by_mirror = {"cameradirection", "skydirection"} & set(tasks)
        for option in ("mirror_augmentation", "mirror_average"):
            if section.get(option) and moved_by_mirror:
                raise ValueError(
                    f"{option} moves the source of a {sorted(moved_by_mirror)[0]} image: "
                    "use it for type and energy only"
                )

    def __init__(self, input_shape, tasks, config=None, parent=None, **kwargs):
        super().__init__(config=config, parent=parent, **kwargs)
        inputs = keras.Input(shape=input_shape, name="input")
        x = inputs
        if self.log_channels:
            if max(self.log_channels) >= input_shape[-1]:
                raise ValueError(f"log_channels {self.log_channels}: the images have {input_shape[-1]} channels")
            x = SignedLog1p(self.log_channels, name="custom_log_channels")(x)
        if self.mirror_augmentation:
            x = keras.layers.RandomFlip("horizontal_and_vertical", name="custom_mirror")(x)
        if self.mirror_average:
            x = MirrorViews(name="custom_mirror_views")(x)
        for i, n_filters in enumerate(self.filters, start=1):
            x = keras.layers.Conv2D(n_filters, 3, padding="same", activation="relu", name=f"custom_conv_{i}")(x)
            x = keras.layers.MaxPool2D(2, name=f"custom_pool_{i}")(x)
        x = keras.layers.Flatten(name="custom_flatten")(x)
        if self.dropout:
            x = keras.layers.Dropout(0.3, name="custom_dropout")(x)
        logits = build_fully_connect_head(x, self.head_layers, self.head_activation_function, tasks)
        if self.mirror_average:
            if isinstance(logits, dict):
                logits = {task: MirrorMean(name=f"custom_mirror_mean_{task}")(out) for task, out in logits.items()}
            else:
                logits = MirrorMean(name="custom_mirror_mean")(logits)
        self.model = keras.Model(inputs, logits, name="CTLearn_model")
