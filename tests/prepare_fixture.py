"""Small replicas of the official MIRFLICKR-25000 and NUS-WIDE layouts, and the list files
python -m spq.prepare must make of them (tests/test_prepare.py, tests/behaviour_digest.py)."""
from pathlib import Path

# ---------------------------------------------------------------- MIRFLICKR replica
# 10 images; 4 of the 24 concepts carry images (columns 0, 1, 2 and 23 alphabetically),
# im6 and im8 carry none
FLICKR_CONCEPTS = ["animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
                   "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
                   "sea", "sky", "structures", "sunset", "transport", "tree", "water"]
FLICKR_STRICT = ["baby_r1", "bird_r1", "car_r1", "clouds_r1", "dog_r1", "female_r1", "flower_r1",
                 "male_r1", "night_r1", "people_r1", "portrait_r1", "river_r1", "sea_r1", "tree_r1"]
MEMBERS = {"animals": [1, 4, 7], "baby": [2, 4], "baby_r1": [2], "bird": [3, 9, 10],
           "bird_r1": [9], "water": [1, 5, 10]}
COMMON_TAGS = "sea 120\nsunset 95\ncat 40\n"
TAGS = {1: "sea\nmyphoto\n", 2: "", 3: "holiday\n", 4: "cat\n", 5: "sunset\n", 6: "sea\n",
        7: "cat\n", 8: "sea\n", 9: "sea\n", 10: "nikon\nsunset\n"}

FLICKR_LABELLED = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im2.jpg 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im3.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
FLICKR_ALL = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im2.jpg 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im3.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im6.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im8.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
# im2 and im3 have tags, but none of common_tags.txt
FLICKR_TAGGED = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
# columns: animals, baby, baby_r1, bird, bird_r1, ..., water
FLICKR_38 = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im2.jpg 0 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im3.jpg 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 0 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
CLASSES_24 = """\
animals
baby
bird
car
clouds
dog
female
flower
food
indoor
lake
male
night
people
plant_life
portrait
river
sea
sky
structures
sunset
transport
tree
water
"""
CLASSES_38 = """\
animals
baby
baby_r1
bird
bird_r1
car
car_r1
clouds
clouds_r1
dog
dog_r1
female
female_r1
flower
flower_r1
food
indoor
lake
male
male_r1
night
night_r1
people
people_r1
plant_life
portrait
portrait_r1
river
river_r1
sea
sea_r1
sky
structures
sunset
transport
tree
tree_r1
water
"""
NOTE = ("note: the official MIRFLICKR-25000 has 25000 images; {raw} has im1.jpg to im10.jpg "
        "(the highest number among the image and concept files)\n")


def flickr_raw(root: Path, annotations: str = "mirflickr25k_annotations_v080") -> Path:
    """The layout of mirflickr25k.zip and mirflickr25k_annotations_v080.zip unpacked into
    root/raw (images as empty files: only their existence is checked)."""
    raw = root / "raw"
    images = raw / "mirflickr"
    (images / "meta" / "tags").mkdir(parents=True)
    (images / "doc").mkdir()
    for k in range(1, 11):
        (images / f"im{k}.jpg").write_bytes(b"")
        (images / "meta" / "tags" / f"tags{k}.txt").write_text(TAGS[k])
    (images / "doc" / "common_tags.txt").write_text(COMMON_TAGS)
    folder = raw / annotations
    folder.mkdir(exist_ok=True)
    for concept in FLICKR_CONCEPTS + FLICKR_STRICT:
        newline = "\r\n" if concept == "bird" else "\n"        # either line ending reads
        (folder / f"{concept}.txt").write_text("".join(f"{k}{newline}" for k in MEMBERS.get(concept, [])),
                                              newline="")
    (folder / "README.txt").write_text("MIRFLICKR-25000 annotations\n")
    return raw


# ---------------------------------------------------------------- NUS-WIDE replica
# 12 images, 23 concepts; frequencies: sky 7, person 6, water 6, clouds 5, tree 5, animal 4,
# beach 4, buildings 4, ocean 3, road 3, snow 3, ten others 2, zebra 1, earthquake 0.
# Top 10: sky ... road (road beats snow, also 3, by name); top 21: all but zebra and
# earthquake. Image 9 carries only concepts outside the top 10, image 10 only zebra,
# image 11 nothing.
NUS_IMAGES = [
    ("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg",
     "sky person water clouds tree animal beach ocean flowers rocks"),
    ("C:\\ImageData\\Flickr\\actor\\0002_174174086.jpg",
     "sky person water clouds tree beach buildings road grass vehicle"),
    ("C:\\ImageData\\Flickr\\administrative_assistant\\0001_1001.jpg",
     "sky person water clouds tree buildings snow lake window"),
    ("C:\\ImageData\\Flickr\\airport\\0001_1002.jpg",
     "sky person water clouds animal buildings mountain rocks"),
    ("C:\\ImageData\\Flickr\\airport\\0002_1003.jpg", "sky person water beach ocean mountain sunset"),
    ("C:\\ImageData\\Flickr\\beach\\0001_1004.jpg", "sky person tree ocean snow plants window"),
    ("C:\\ImageData\\Flickr\\cat\\0001_1005.jpg", "sky clouds animal road plants sunset"),
    ("C:\\ImageData\\Flickr\\cat\\0002_1006.jpg", "water tree road reflection vehicle"),
    ("C:\\ImageData\\Flickr\\dog\\0001_1007.jpg", "animal beach buildings snow reflection"),
    ("C:\\ImageData\\Flickr\\garden\\0001_1008.jpg", "flowers grass lake"),
    ("C:\\ImageData\\Flickr\\zoo\\0001_1009.jpg", "zebra"),
    ("C:\\ImageData\\Flickr\\zoo\\0002_1010.jpg", ""),
]
NUS_CONCEPTS = sorted("animal beach buildings clouds earthquake flowers grass lake mountain ocean "
                      "person plants reflection road rocks sky snow sunset tree vehicle water "
                      "window zebra".split())

# columns: animal beach buildings clouds flowers grass lake mountain ocean person plants
# reflection road rocks sky snow sunset tree vehicle water window
NUS_21 = """\
Flickr/actor/0001_2124494179.jpg 1 1 0 1 1 0 0 0 1 1 0 0 0 1 1 0 0 1 0 1 0
Flickr/actor/0002_174174086.jpg 0 1 1 1 0 1 0 0 0 1 0 0 1 0 1 0 0 1 1 1 0
Flickr/administrative_assistant/0001_1001.jpg 0 0 1 1 0 0 1 0 0 1 0 0 0 0 1 1 0 1 0 1 1
Flickr/airport/0001_1002.jpg 1 0 1 1 0 0 0 1 0 1 0 0 0 1 1 0 0 0 0 1 0
Flickr/airport/0002_1003.jpg 0 1 0 0 0 0 0 1 1 1 0 0 0 0 1 0 1 0 0 1 0
Flickr/beach/0001_1004.jpg 0 0 0 0 0 0 0 0 1 1 1 0 0 0 1 1 0 1 0 0 1
Flickr/cat/0001_1005.jpg 1 0 0 1 0 0 0 0 0 0 1 0 1 0 1 0 1 0 0 0 0
Flickr/cat/0002_1006.jpg 0 0 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 1 1 0
Flickr/dog/0001_1007.jpg 1 1 1 0 0 0 0 0 0 0 0 1 0 0 0 1 0 0 0 0 0
Flickr/garden/0001_1008.jpg 0 0 0 0 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""
NUS_CLASSES_21 = """\
animal
beach
buildings
clouds
flowers
grass
lake
mountain
ocean
person
plants
reflection
road
rocks
sky
snow
sunset
tree
vehicle
water
window
"""
NUS_CLASSES_21_BY_FREQUENCY = """\
sky
person
water
clouds
tree
animal
beach
buildings
ocean
road
snow
flowers
grass
lake
mountain
plants
reflection
rocks
sunset
vehicle
window
"""
# columns: sky person water clouds tree animal beach buildings ocean road
NUS_10_BY_FREQUENCY = """\
Flickr/actor/0001_2124494179.jpg 1 1 1 1 1 1 1 0 1 0
Flickr/actor/0002_174174086.jpg 1 1 1 1 1 0 1 1 0 1
Flickr/administrative_assistant/0001_1001.jpg 1 1 1 1 1 0 0 1 0 0
Flickr/airport/0001_1002.jpg 1 1 1 1 0 1 0 1 0 0
Flickr/airport/0002_1003.jpg 1 1 1 0 0 0 1 0 1 0
Flickr/beach/0001_1004.jpg 1 1 0 0 1 0 0 0 1 0
Flickr/cat/0001_1005.jpg 1 0 0 1 0 1 0 0 0 1
Flickr/cat/0002_1006.jpg 0 0 1 0 1 0 0 0 0 1
Flickr/dog/0001_1007.jpg 0 0 0 0 0 1 1 1 0 0
"""
# all 23 concepts, alphabetical: earthquake is the 5th column, zebra the last
NUS_ALL = """\
Flickr/actor/0001_2124494179.jpg 1 1 0 1 0 1 0 0 0 1 1 0 0 0 1 1 0 0 1 0 1 0 0
Flickr/actor/0002_174174086.jpg 0 1 1 1 0 0 1 0 0 0 1 0 0 1 0 1 0 0 1 1 1 0 0
Flickr/administrative_assistant/0001_1001.jpg 0 0 1 1 0 0 0 1 0 0 1 0 0 0 0 1 1 0 1 0 1 1 0
Flickr/airport/0001_1002.jpg 1 0 1 1 0 0 0 0 1 0 1 0 0 0 1 1 0 0 0 0 1 0 0
Flickr/airport/0002_1003.jpg 0 1 0 0 0 0 0 0 1 1 1 0 0 0 0 1 0 1 0 0 1 0 0
Flickr/beach/0001_1004.jpg 0 0 0 0 0 0 0 0 0 1 1 1 0 0 0 1 1 0 1 0 0 1 0
Flickr/cat/0001_1005.jpg 1 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1 0 1 0 0 0 0 0
Flickr/cat/0002_1006.jpg 0 0 0 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 1 1 0 0
Flickr/dog/0001_1007.jpg 1 1 1 0 0 0 0 0 0 0 0 0 1 0 0 0 1 0 0 0 0 0 0
Flickr/garden/0001_1008.jpg 0 0 0 0 0 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
Flickr/zoo/0001_1009.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""


def nus_raw(root: Path) -> Path:
    """The NUS-WIDE layout in root/raw: ImageList, ConceptsList, Groundtruth/AllLabels and the
    images under Flickr/ (empty files)."""
    raw = root / "raw"
    for folder in ("ImageList", "ConceptsList", "Groundtruth/AllLabels"):
        (raw / folder).mkdir(parents=True)
    (raw / "ImageList" / "Imagelist.txt").write_text(
        "".join(f"{path}\r\n" for path, _ in NUS_IMAGES), newline="")
    (raw / "ConceptsList" / "Concepts81.txt").write_text("".join(f"{c}\n" for c in NUS_CONCEPTS))
    for concept in NUS_CONCEPTS:
        values = [str(int(concept in tags.split())) for _, tags in NUS_IMAGES]
        (raw / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            "".join(v + "\n" for v in values))
    for path, _ in NUS_IMAGES:
        image = raw / path[len("C:\\ImageData\\"):].replace("\\", "/")
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"")
    return raw
