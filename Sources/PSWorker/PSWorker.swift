import PSTrain
