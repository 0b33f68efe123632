"""Images and their sets: decoding files, CIFAR-10, image folders, list files, the
official layouts of FLICKR25K and NUS-WIDE, query/train/database splits, and the
--dataset dispatch (`datasets.DataOptions`)."""
