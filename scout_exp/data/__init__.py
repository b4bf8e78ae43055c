"""Data: synthetic FaceParts benchmark, image folders, CASIA ``.dat`` files, preprocessing."""
