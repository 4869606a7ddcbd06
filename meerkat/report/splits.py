"""How the splits were grouped (run.json's split_grouping, samples/groups.py), in the sentences the
page and the model card print: a reader of the figures must know whether one video, image or camera
could be on both sides of them."""

WHAT = {
    "auto": "video or image from meerkat's crop names, else the camera sub-folder",
    "name": "video or image from meerkat's crop names",
    "folder": "the sub-folder under each class folder (a camera or site)",
}


def sentences(run: dict) -> list[str]:
    """Plain sentences about the grouping of a run's splits; none for a run from before grouping."""
    g = run.get("split_grouping")
    if not g:
        return []
    if g["group_by"] == "none":
        return [
            "Splits not grouped (--group-by none): crops of one video, image or camera may be on both sides, "
            "so the validation and eval figures may be too kind."
        ]
    out = [
        f"Splits grouped by {WHAT[g['group_by']]} (--group-by {g['group_by']}): {g['train_groups']} groups in the "
        f"train set, {g['eval_groups']} in the eval set."
    ]
    shared = g["groups_in_train_and_eval"]
    if shared:
        examples = ", ".join(g["groups_in_train_and_eval_examples"])
        more = ", ..." if shared > len(g["groups_in_train_and_eval_examples"]) else ""
        out.append(
            f"{shared} group{'s have' if shared > 1 else ' has'} crops in both the train and the eval set "
            f"({examples}{more}): the eval figures may be too kind for new videos or cameras."
        )
    if g["validation_split_by_file"]:
        out.append(
            f"The validation part of {', '.join(g['validation_split_by_file'])} was split by file: too few groups."
        )
    return out


def leak_free(run: dict) -> bool:
    """Whether grouping kept every group on one side of train and eval."""
    g = run.get("split_grouping")
    return bool(g) and g["group_by"] != "none" and not g["groups_in_train_and_eval"]
