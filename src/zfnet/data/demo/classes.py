"""Class tables of the demo datasets: real class names with the demo's (shape family, texture, hue),
RNG stream identifiers and ground-truth CSV columns (see :mod:`zfnet.data.demo`)."""

from __future__ import annotations

from zfnet.data.demo import shapes as S

# --------------------------------------------------------------------------------------------
# class tables: real names, with the demo's (shape family, texture, hue) for each class.
# Classes are taken in list order (first num_classes); the face-like class is always first.
# --------------------------------------------------------------------------------------------

FACE_WNID = "n02102040"

_IMAGENET_CURATED = [  # the Imagenette classes
    (FACE_WNID, "English springer, English springer spaniel", "face", "fur", 0.07),
    ("n01440764", "tench, Tinca tinca", "blob", "dots", 0.25),
    ("n02979186", "cassette player", "square", "grid", 0.6),
    ("n03000684", "chain saw, chainsaw", "cross", "stripes", 0.12),
    ("n03028079", "church, church building", "triangle", "checker", 0.0),
    ("n03394916", "French horn, horn", "ring", "rings", 0.14),
    ("n03417042", "garbage truck, dustcart", "hexagon", "stripes", 0.35),
    ("n03425413", "gas pump, gasoline pump, petrol pump, island dispenser", "crescent", "solid", 0.95),
    ("n03445777", "golf ball", "disc", "dots", 0.5),
    ("n03888257", "parachute, chute", "star", "split", 0.8),
]
_IMAGENET_EXTRA = [
    ("n01443537", "goldfish, Carassius auratus"),
    ("n01484850", "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias"),
    ("n01491361", "tiger shark, Galeocerdo cuvieri"),
    ("n01494475", "hammerhead, hammerhead shark"),
    ("n01496331", "electric ray, crampfish, numbfish, torpedo"),
    ("n01498041", "stingray"),
    ("n01514668", "cock"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich, Struthio camelus"),
    ("n02085620", "Chihuahua"),
    ("n02099601", "golden retriever"),
    ("n02108915", "French bulldog"),
    ("n03255030", "dumbbell"),
    ("n03272010", "electric guitar"),
    ("n03372029", "flute, transverse flute"),
    ("n03384352", "forklift"),
    ("n03388043", "fountain"),
    ("n03393912", "freight car"),
    ("n03400231", "frying pan, frypan, skillet"),
    ("n03443371", "goblet"),
    ("n03445924", "golfcart, golf cart"),
    ("n03447721", "gong, tam-tam"),
    ("n03452741", "grand piano, grand"),
]

_CALTECH101_CURATED = [
    ("Faces", "face", "fur", 0.07),
    ("soccer_ball", "disc", "checker", 0.6),
    ("starfish", "star", "dots", 0.05),
    ("stop_sign", "hexagon", "solid", 0.0),
    ("pyramid", "triangle", "stripes", 0.12),
    ("yin_yang", "crescent", "split", 0.7),
    ("watch", "ring", "grid", 0.55),
    ("accordion", "square", "stripes", 0.3),
    ("airplanes", "cross", "solid", 0.6),
    ("anchor", "arrow", "speckle", 0.65),
    ("ant", "blob", "checker", 0.02),
]
_CALTECH101_ALL = (
    "Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel bass beaver binocular "
    "bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair "
    "chandelier cougar_body cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill "
    "dolphin dragonfly electric_guitar elephant emu euphonium ewer ferry flamingo flamingo_head garfield "
    "gerenuk gramophone grand_piano hawksbill headphone hedgehog helicopter ibis inline_skate joshua_tree "
    "kangaroo ketch lamp laptop llama lobster lotus mandolin mayfly menorah metronome minaret nautilus "
    "octopus okapi pagoda panda pigeon pizza platypus pyramid revolver rhino rooster saxophone schooner "
    "scissors scorpion sea_horse snoopy soccer_ball stapler starfish stegosaurus stop_sign strawberry "
    "sunflower tick trilobite umbrella watch water_lilly wheelchair wild_cat windsor_chair wrench yin_yang"
).split()
CALTECH101_BACKGROUND = "BACKGROUND_Google"

_CALTECH256_CURATED = [
    ("253.faces-easy-101", "face", "fur", 0.07),
    ("193.soccer-ball", "disc", "checker", 0.6),
    ("201.starfish-101", "star", "dots", 0.05),
    ("167.pyramid", "triangle", "stripes", 0.12),
    ("037.chess-board", "square", "checker", 0.1),
    ("177.saturn", "ring", "stripes", 0.1),
    ("054.diamond-ring", "rhombus", "solid", 0.55),
    ("069.fighter-jet", "arrow", "split", 0.6),
    ("043.coin", "disc", "rings", 0.12),
    ("095.hamburger", "crescent", "speckle", 0.08),
    ("226.traffic-light", "hexagon", "dots", 0.3),
]
_CALTECH256_ALL = (
    "001.ak47 002.american-flag 003.backpack 004.baseball-bat 005.baseball-glove 006.basketball-hoop "
    "007.bat 008.bathtub 009.bear 010.beer-mug 011.billiards 012.binoculars 013.birdbath 014.blimp "
    "015.bonsai-101 016.boom-box 017.bowling-ball 018.bowling-pin 019.boxing-glove 020.brain-101 "
    "021.breadmaker 022.buddha-101 023.bulldozer 024.butterfly 025.cactus 026.cake 027.calculator "
    "028.camel 029.cannon 030.canoe 031.car-tire 032.cartman 033.cd 034.centipede 035.cereal-box "
    "036.chandelier-101 037.chess-board 038.chimp 039.chopsticks 040.cockroach 041.coffee-mug 042.coffin "
    "043.coin 044.comet 045.computer-keyboard 046.computer-monitor 047.computer-mouse 048.conch "
    "049.cormorant 050.covered-wagon 051.cowboy-hat 052.crab-101 053.desk-globe 054.diamond-ring "
    "055.dice 056.dog 057.dolphin-101 058.doorknob 059.drinking-straw 060.duck 061.dumb-bell "
    "062.eiffel-tower 069.fighter-jet 095.hamburger 167.pyramid 177.saturn 193.soccer-ball "
    "201.starfish-101 226.traffic-light 253.faces-easy-101"
).split()
CALTECH256_CLUTTER = "257.clutter"

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def _auto_assign(names, curated):
    """Curated (name, family, texture, hue) first, then unused (family, texture) pairs for the rest."""
    combos = [
        (fam, S.TEXTURES[(fi + shift) % len(S.TEXTURES)])
        for shift in range(len(S.TEXTURES))
        for fi, fam in enumerate(S.FAMILIES)
    ]  # all len(FAMILIES) * len(TEXTURES) pairs, each once
    table = list(curated)
    used = {(f, t) for _, f, t, _ in curated}
    taken = {n for n, *_ in curated}
    free = [p for p in combos if p not in used]
    k = 0
    for name in names:
        if name in taken:
            continue
        if not free:  # more classes than pairs: reuse pairs (classes then differ by hue only)
            free = list(combos)
        fam, tex = free.pop(0)
        k += 1
        table.append((name, fam, tex, (k * 0.618034) % 1.0))
    return table


_IMAGENET_NAMES = {w: n for w, n, *_ in _IMAGENET_CURATED} | dict(_IMAGENET_EXTRA)
IMAGENET_CLASSES = _auto_assign(
    [w for w, _ in _IMAGENET_EXTRA], [(w, f, t, h) for w, _, f, t, h in _IMAGENET_CURATED]
)  # (wnid, family, texture, hue)
CALTECH101_CLASSES = _auto_assign(
    [n for n in _CALTECH101_ALL if n != "Faces_easy"], _CALTECH101_CURATED
)  # Faces_easy left out: one face class per dataset
CALTECH256_CLASSES = _auto_assign(
    [n for n in _CALTECH256_ALL if n != "253.faces-easy-101"], _CALTECH256_CURATED
)
VOC_TABLE = {
    name: (fam, tex, hue)
    for name, fam, tex, hue in _auto_assign(
        [c for c in VOC_CLASSES if c != "person"], [("person", "face", "fur", 0.07)]
    )
}

# RNG stream identifiers (part of every per-image seed; never reorder)
_DS_IMAGENET_TRAIN, _DS_IMAGENET_VAL, _DS_C101, _DS_C101_BG = 1, 2, 3, 4
_DS_C256, _DS_C256_BG, _DS_VOC, _DS_PLAN, _DS_DUP = 5, 6, 7, 8, 9

GT_COLUMNS_IMAGENET = [
    "split", "path", "wnid", "label", "width", "height", "xmin", "ymin", "xmax", "ymax",
    "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "nose_x", "nose_y", "family", "texture",
]  # fmt: skip
GT_COLUMNS_CALTECH = [
    "path", "class", "label", "width", "height", "xmin", "ymin", "xmax", "ymax",
    "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "nose_x", "nose_y", "family", "texture",
    "duplicate_of",
]  # fmt: skip
GT_COLUMNS_DUPLICATES = ["dataset", "caltech_path", "imagenet_path", "scale", "jpeg_quality"]
