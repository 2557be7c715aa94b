"""The keys archc writes into ONNX metadata, so the analyzer (and later stages) can point back at the spec.

Node metadata (`NodeProto.metadata_props`) and model metadata (`ModelProto.metadata_props`) use these names; the
emitter writes them and the analyzer reads them. They are part of the files archc writes: do not rename.
"""
# per node
PATH = "archc.path"  # the layer's spec path, e.g. inception_3a/b2/conv
LAYER = "archc.layer"  # the spec op keyword, e.g. conv
BLOCK = "archc.block"  # the innermost block instance's path ("" at top level)
BLOCKS = "archc.blocks"  # JSON: the block stack, outermost first: [{path, type, args}]
ARGS = "archc.args"  # JSON: the layer's arguments as bound in the spec
SPAN = "archc.span"  # file:line:col of the spec text

# per model
NETWORK = "archc.network"
SOURCE = "archc.source"
PARAMS = "archc.params"  # JSON: the network parameters
