"""Can DL1 files be used together? Same subarray, data model and processing products."""

import tables
from ctapipe.instrument import SubarrayDescription

__all__ = ["FileSummary", "summarize", "incompatibility"]

_DATA_ATTRS = ("CTA PRODUCT DATA MODEL VERSION", "CTA PROCESS TYPE", "CTA PRODUCT DATA LEVELS")
_PRODUCT_GROUPS = (
    "/dl1/event/telescope/images", "/dl1/event/telescope/parameters", "/simulation/event/subarray/shower",
)


class FileSummary:
    """What decides whether two DL1 files can be merged, and how many events each holds."""

    def __init__(self, path):
        self.path = path
        with tables.open_file(path) as h5:
            attrs = h5.root._v_attrs
            self.attrs = {k: str(attrs[k]) if k in attrs._v_attrnames else None for k in _DATA_ATTRS}
            self.groups = tuple(g for g in _PRODUCT_GROUPS if g in h5.root)
            trigger = "/dl1/event/subarray/trigger"
            self.n_events = h5.root[trigger].nrows if trigger in h5.root else 0
        self.subarray = SubarrayDescription.from_hdf(path, focal_length_choice="EQUIVALENT")


def _subarray_difference(ours, theirs):
    if set(ours.tel_ids) != set(theirs.tel_ids):
        return f"telescopes {sorted(theirs.tel_ids)} vs {sorted(ours.tel_ids)}"
    if ours.name != theirs.name:
        return f"subarray name {theirs.name!r} vs {ours.name!r}"
    for tel_id in ours.tel_ids:
        if ours.tel[tel_id] != theirs.tel[tel_id]:
            return f"telescope {tel_id} is {theirs.tel[tel_id]} vs {ours.tel[tel_id]}"
    return "telescope positions or reference location differ"


def summarize(path):
    return FileSummary(path)


def incompatibility(reference: FileSummary, other: FileSummary):
    """Why ``other`` cannot join ``reference`` (a sentence), or None."""
    if other.subarray != reference.subarray:
        return f"different subarray than {reference.path.name} ({_subarray_difference(reference.subarray, other.subarray)})"
    for key, value in reference.attrs.items():
        if other.attrs[key] != value:
            return f"{key} is {other.attrs[key]!r}, {reference.path.name} has {value!r}"
    if other.groups != reference.groups:
        return f"holds {list(other.groups)}, {reference.path.name} holds {list(reference.groups)} (other processing)"
    return None
