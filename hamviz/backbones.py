"""The models hamviz can build, and their input limits (no Keras import: params validation uses it)."""

#: backbone -> (constructor name in keras.applications, preprocessing mode, minimum input edge)
BACKBONES = {
    "inceptionv3": ("InceptionV3", "tf", 75),
    "densenet201": ("DenseNet201", "torch", 32),
    "resnet50": ("ResNet50", "caffe", 32),
    "vgg19": ("VGG19", "caffe", 32),
    "mobilenetv2": ("MobileNetV2", "tf", 32),
}
MODEL_NAMES = ("small_cnn", *BACKBONES)
#: models built by name that are not classifier-chapter choices (their builders check their own sizes)
OTHER_MODELS = ("configurable_cnn",)
MIN_SIZE = {"small_cnn": 8, **{k: v[2] for k, v in BACKBONES.items()}}


def check_size(model: str, size: int) -> str | None:
    """A message if ``model`` cannot take ``size`` x ``size`` inputs, else None."""
    if model not in MIN_SIZE:
        return f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}"
    if size < MIN_SIZE[model]:
        return (f"{model} needs inputs of at least {MIN_SIZE[model]}x{MIN_SIZE[model]} pixels, "
                f"not {size}x{size}: raise the image size or choose another model")
    return None
