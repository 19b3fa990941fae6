import PSMath
