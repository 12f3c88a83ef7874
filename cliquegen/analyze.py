"""Deprecated: this module moved to cliquegen.analysis; its names still work here for one release, with a
DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.analyze",
    {
        "FeatureMap": "cliquegen.analysis.features",
        "FeatureMaps": "cliquegen.analysis.features",
        "Input": "cliquegen.analysis.features",
        "LayerMaps": "cliquegen.analysis.features",
        "WeightMatrix": "cliquegen.analysis.weights",
        "analyze_features": "cliquegen.analysis.analyze",
        "analyze_weights": "cliquegen.analysis.analyze",
        "block_layers": "cliquegen.analysis.features",
        "central_share": "cliquegen.analysis.features",
        "feature_map": "cliquegen.analysis.features",
        "feature_maps": "cliquegen.analysis.features",
        "gini": "cliquegen.analysis.weights",
        "intermediate_values": "cliquegen.analysis.features",
        "read_input_image": "cliquegen.analysis.features",
        "read_sample": "cliquegen.analysis.features",
        "weight_matrices": "cliquegen.analysis.weights",
        "weight_usage": "cliquegen.analysis.weights",
    },
)
