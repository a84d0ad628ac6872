"""Hierarchies from a real beton manifest, a parent-child file and the ImageNet devkit's meta.mat (official layout)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.io

from dataset_writers.manifest import LabelLevel, Manifest
from dataset_writers.records import ArrayImages, SplitIndex
from dataset_writers.write import ImageOptions, write_split
from ffcv_ssl.evaluation.cache import FeatureCacheWriter
from ffcv_ssl.evaluation.hierarchy import Hierarchy, HierarchyError

# A 3-level taxonomy, family > genus > species; Felis and Vulpes have a single species each.
TAXA = [  # (species, genus, family)
    ("Panthera leo", "Panthera", "Felidae"),
    ("Panthera tigris", "Panthera", "Felidae"),
    ("Felis catus", "Felis", "Felidae"),
    ("Canis lupus", "Canis", "Canidae"),
    ("Canis latrans", "Canis", "Canidae"),
    ("Vulpes vulpes", "Vulpes", "Canidae"),
]
SPECIES = [s for s, _, _ in TAXA]
GENERA = ["Panthera", "Felis", "Canis", "Vulpes"]
FAMILIES = ["Felidae", "Canidae"]
TARGETS = np.array([0, 1, 2, 3, 4, 5])           # leo, tigris, catus, lupus, latrans, vulpes
PREDS = np.array([1, 0, 2, 4, 5, 3])             # tigris, leo, catus, latrans, vulpes, lupus
EXPECTED = {"family": 1.0, "genus": 4 / 6, "species": 1 / 6}   # worked out by hand from TAXA


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def taxonomy_beton(path, species_present=range(6), levels=True) -> Manifest:
    """A real beton (ffcv writer) whose manifest carries the family/genus levels; returns the manifest."""
    labels = np.repeat(np.asarray(list(species_present)), 2)
    images = np.random.default_rng(0).integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    genus = np.array([GENERA.index(TAXA[s][1]) for s in labels])
    family = np.array([FAMILIES.index(TAXA[s][2]) for s in labels])
    index = SplitIndex("toy-taxa", "train", np.arange(len(labels)), labels, SPECIES, ArrayImages(images),
                       levels={"family": family, "genus": genus} if levels else {},
                       level_names={"family": FAMILIES, "genus": GENERA} if levels else {})
    return write_split(index, path, image=ImageOptions(max_resolution=16, write_mode="raw", page_size=1 << 21),
                       workers=0)


@pytest.fixture(scope="module")
def betons(tmp_path_factory):
    root = tmp_path_factory.mktemp("taxa")
    full = taxonomy_beton(root / "train.beton")
    partial = taxonomy_beton(root / "val.beton", species_present=[0, 1, 3, 4])   # no Felis, no Vulpes
    flat = taxonomy_beton(root / "flat.beton", levels=False)
    return root, full, partial, flat


def test_manifest_hierarchy_maps_exactly(betons):
    root, manifest, _, _ = betons
    h = Hierarchy.from_manifest(root / "train.beton", fine_level="species")
    assert h.levels == ["family", "genus"] and h.all_levels == ["family", "genus", "species"]
    fine = np.arange(6)
    assert [h.names["genus"][g] for g in h.map_up(fine, "genus")] == [g for _, g, _ in TAXA]
    assert [h.names["family"][f] for f in h.map_up(fine, "family")] == [f for _, _, f in TAXA]
    np.testing.assert_array_equal(h.map_up(fine, "species"), fine)
    scores = h.top1_per_level(PREDS, TARGETS)
    assert list(scores) == ["family", "genus", "species"]   # coarse to fine
    assert scores == pytest.approx(EXPECTED)
    # the single-species genus Felis: catus is only ever confused with itself at the genus level
    assert h.map_up(np.array([2]), "genus")[0] not in h.map_up(np.array([0, 1, 3, 4, 5]), "genus")
    # the same hierarchy, read back from a feature cache that copied the beton's label levels
    cache_dir = root / "cache"
    with FeatureCacheWriter(cache_dir, count=1, width=1, checkpoint_sha256="a" * 64, beton_sha256="b" * 64,
                            arch="resnet18", pipeline={}, class_names=manifest.class_names,
                            label_levels=manifest.to_dict()["label_levels"]) as w:
        w.add(np.zeros((1, 1)), [0], [0])
    from_cache = Hierarchy.from_manifest(w.cache.manifest, fine_level="species")
    assert from_cache.top1_per_level(PREDS, TARGETS) == scores


def test_a_level_named_like_the_fine_level_is_the_fine_level(betons):
    _, manifest, _, _ = betons
    levels = dict(manifest.label_levels)
    levels["species"] = LabelLevel(SPECIES, [2] * 6, list(range(6)))                     # as iNat21 writes it
    h = Hierarchy.from_manifest(replace(manifest, label_levels=levels), fine_level="species")
    assert h.all_levels == ["family", "genus", "species"]
    assert h.top1_per_level(PREDS, TARGETS) == pytest.approx(EXPECTED)


def test_manifests_of_two_splits_merge(betons):
    root, _, partial, _ = betons
    # classes absent from the val split have no parent in its manifest ...
    assert partial.label_levels["genus"].of_label[2] == -1
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_manifest(partial, fine_level="species").top1_per_level(PREDS, TARGETS)
    assert "'Felis catus' has no parent at level family" in one_line(exc)
    # ... and get it from the train split's manifest
    merged = Hierarchy.from_manifest(root / "val.beton", root / "train.beton", fine_level="species")
    assert merged.top1_per_level(PREDS, TARGETS) == pytest.approx(EXPECTED)


def test_inconsistent_manifests_are_one_line_errors(betons):
    root, manifest, _, flat = betons
    of_family = list(manifest.label_levels["family"].of_label)
    of_family[1] = FAMILIES.index("Canidae")            # tigris now in Canidae, leo still in Felidae
    family = replace(manifest.label_levels["family"], of_label=of_family)
    bad = replace(manifest, label_levels={**manifest.label_levels, "family": family})
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_manifest(bad)
    assert "genus 'Panthera' has two parents at level family" in one_line(exc)
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_manifest(manifest, bad)
    assert "label 'Panthera tigris' has two parents at level family" in one_line(exc)
    # a beton without the hierarchy fields asked for
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_manifest(root / "flat.beton", levels=["genus"])
    assert "no label level 'genus' (label_levels: none)" in one_line(exc)
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_manifest(manifest, levels=["order"])
    assert "no label level 'order' (label_levels: family, genus)" in one_line(exc)
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_manifest(manifest).map_up(np.array([6]), "genus")
    assert "6 fine classes" in one_line(exc)


def test_parent_file_matches_the_manifest(betons, tmp_path):
    root, _, _, _ = betons
    lines = ["parent,child", "# a root above the families", "Carnivora,Felidae", "Carnivora,Canidae"]
    lines += [f"{f},{g}" for _, g, f in TAXA] + [f"{g},{s}" for s, g, _ in TAXA]
    path = tmp_path / "taxa.csv"
    path.write_text("\n".join(lines) + "\n")
    h = Hierarchy.from_parent_file(path, SPECIES, fine_level="species")
    assert h.levels == ["depth_1", "depth_2"]                   # depth_0 (the single root) says nothing
    assert sorted(h.names["depth_1"]) == sorted(FAMILIES) and sorted(h.names["depth_2"]) == sorted(GENERA)
    from_manifest = Hierarchy.from_manifest(root / "train.beton", fine_level="species")
    for ours, theirs in (("depth_1", "family"), ("depth_2", "genus")):
        assert [h.names[ours][i] for i in h.map_up(np.arange(6), ours)] == \
               [from_manifest.names[theirs][i] for i in from_manifest.map_up(np.arange(6), theirs)]
    assert list(h.top1_per_level(PREDS, TARGETS).values()) == pytest.approx(list(EXPECTED.values()))


def test_unbalanced_tree_clamps_at_the_leaf(tmp_path):
    path = tmp_path / "scenes.csv"
    path.write_text("indoor,home\nhome,bedroom\nhome,kitchen\noutdoor,beach\n")   # beach is one level up
    h = Hierarchy.from_parent_file(path, ["bedroom", "kitchen", "beach"])
    assert h.levels == ["depth_0", "depth_1"]
    assert [h.names["depth_0"][i] for i in h.map_up(np.arange(3), "depth_0")] == ["indoor", "indoor", "outdoor"]
    assert [h.names["depth_1"][i] for i in h.map_up(np.arange(3), "depth_1")] == ["home", "home", "beach"]


@pytest.mark.parametrize("text, fine, message", [
    ("a,x\nb,x\n", ["x"], "h.csv:2: 'x' has two parents ('a' on line 1 and 'b')"),
    ("a,x\na,zz\n", ["x"], "h.csv:2: leaf 'zz' is not a class of the dataset"),
    ("a,x\n", ["x", "y"], "class 'y' has no parent line"),
    ("a,x\nx,y\n", ["x", "y"], "class 'x' has children"),
    ("a,b\nb,a\na,x\n", ["x"], "form a cycle"),
    ("a,x,extra\n", ["x"], "h.csv:1: expected 'parent,child'"),
])
def test_bad_parent_files_are_one_line_errors(tmp_path, text, fine, message):
    path = tmp_path / "h.csv"
    path.write_text(text)
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_parent_file(path, fine)
    assert message in one_line(exc)


# --- ImageNet devkit meta.mat -------------------------------------------------------------------
META_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
               "num_train_images")
# (id, wnid, words, children): leaves first (ILSVRC2012_ID 1..6, NOT in WNID order), then the high-level synsets.
SYNSETS = [
    (1, "n02119789", "kit fox, Vulpes macrotis", []),
    (2, "n02100735", "English setter", []),
    (3, "n01440764", "tench, Tinca tinca", []),
    (4, "n03255030", "dumbbell", []),
    (5, "n02085620", "Chihuahua", []),
    (6, "n04040759", "radiator", []),
    (7, "n00001740", "entity", [8, 11]),
    (8, "n00015388", "animal, animate being", [9, 10, 3]),
    (9, "n02084071", "dog, domestic dog", [2, 5]),
    (10, "n02118333", "fox", [1]),
    (11, "n00021939", "artifact, artefact", [4, 6, 12]),
    (12, "n03183080", "device", [4]),        # a second parent of dumbbell: WordNet is a DAG
]


def write_meta_mat(path):
    """``synsets`` as the devkit stores it: an N x 1 struct array of doubles and char arrays."""
    records = np.zeros((len(SYNSETS), 1), dtype=[(f, object) for f in META_FIELDS])
    for row, (sid, wnid, words, children) in enumerate(SYNSETS):
        height, images = (1, 0) if children else (0, 1300)
        records[row, 0] = (np.array([[sid]], float), wnid, words, f"gloss of {words}",
                           np.array([[len(children)]], float), np.array([children], float).reshape(1, -1),
                           np.array([[height]], float), np.array([[images]], float))
    scipy.io.savemat(path, {"synsets": records})


def test_imagenet_meta_mat_depth_levels(tmp_path):
    path = tmp_path / "meta.mat"
    write_meta_mat(path)
    # the layout reads as torchvision's parse_meta_mat reads the devkit: leaves are rows with num_children == 0
    meta = scipy.io.loadmat(path, squeeze_me=True)["synsets"]
    leaves = [meta[i] for i, n in enumerate(list(zip(*meta))[4]) if n == 0]
    assert list(list(zip(*leaves))[0]) == [1, 2, 3, 4, 5, 6]

    h = Hierarchy.from_imagenet_meta(path)
    # fine labels are sorted-WNID indices (torchvision / ImageFolder order), not ILSVRC2012_IDs
    assert h.fine_names == ["n01440764", "n02085620", "n02100735", "n02119789", "n03255030", "n04040759"]
    assert h.levels == ["depth_1", "depth_2"]                 # entity alone and the leaves again are dropped
    assert h.names["depth_1"] == ["n00015388", "n00021939"]   # animal, artifact
    np.testing.assert_array_equal(h.map_up(np.arange(6), "depth_1"), [0, 0, 0, 0, 1, 1])
    # depth 2: tench (a leaf at depth 2), dog, dog, fox, dumbbell (via artifact, first parent), radiator
    assert [h.names["depth_2"][i] for i in h.map_up(np.arange(6), "depth_2")] == \
           ["n01440764", "n02084071", "n02084071", "n02118333", "n03255030", "n04040759"]
    assert "1 synset(s) with several parents" in h.source
    # tench->dog, dog->dog (right at depth 2), dog->fox, fox->tench, dumbbell<->radiator: all right at depth 1
    scores = h.top1_per_level(np.array([1, 2, 3, 0, 5, 4]), np.arange(6))
    assert scores == pytest.approx({"depth_1": 1.0, "depth_2": 1 / 6, "label": 0.0})
    # the beton's class order may differ: labels follow the given WNIDs
    h2 = Hierarchy.from_imagenet_meta(path, wnids=["n04040759", "n01440764"])
    np.testing.assert_array_equal(h2.map_up(np.arange(2), "depth_1"), [1, 0])


@pytest.mark.parametrize("wnids, message", [
    (["n02084071"], "'n02084071' is not a leaf synset"),
    (["n09999999"], "'n09999999' is unknown"),
])
def test_bad_imagenet_classes_are_one_line_errors(tmp_path, wnids, message):
    path = tmp_path / "meta.mat"
    write_meta_mat(path)
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_imagenet_meta(path, wnids=wnids)
    assert message in one_line(exc)
    not_mat = tmp_path / "other.mat"
    scipy.io.savemat(not_mat, {"something": np.zeros(3)})
    with pytest.raises(HierarchyError) as exc:
        Hierarchy.from_imagenet_meta(not_mat)
    assert "no 'synsets' struct" in one_line(exc)


def test_hierarchical_results_json_keeps_levels_coarse_to_fine(betons, tmp_path):
    from ffcv_ssl.results import EvalInfo, PretrainInfo, Results, read_results, write_results

    root, _, _, _ = betons
    h = Hierarchy.from_manifest(root / "train.beton", fine_level="species")
    levels = h.top1_per_level(PREDS, TARGETS)
    res = Results(pretrain=PretrainInfo(method="supervised", dataset="inat21"),
                  eval=EvalInfo(kind="hierarchical", dataset="inat21", label_level="species"),
                  metrics={"top1": levels["species"]}, levels=levels, extra={"hierarchy": h.describe()})
    back = read_results(write_results(res, tmp_path / "results.json"))
    assert list(back.levels) == ["family", "genus", "species"] and back.levels == pytest.approx(EXPECTED)
    assert back.extra["hierarchy"]["levels"] == {"family": 2, "genus": 4}
