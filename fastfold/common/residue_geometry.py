"""Tabulated geometry of the 20 amino acids, read by :mod:`fastfold.common.residue_constants`.

Two whitespace-separated tables, kept as text so that they read like the literature they come from.

``IDEALISED_ATOM_POSITIONS``: for every heavy atom of every residue type, the rigid group that carries it
(0 backbone, 3 psi, 4-7 chi1-chi4; AlphaFold2 supplement Table 2) and its position in Angstrom in that group's
frame. Each frame has its origin on the end atom of the rotation axis, the x-axis along that axis, and the
atom that defines the torsion in the xy-plane with positive y. These are AlphaFold's idealised values
(in which the proline CD sits at a bond angle widened by 2 degrees).

``BOND_GEOMETRY``: literature bond lengths (two atoms, Angstrom) and bond angles (three atoms, degrees)
with their standard deviations (Engh & Huber), used for the structural violation losses. Rows for the
backbone bonds and angles that most residues share live in ``STANDARD_BACKBONE_GEOMETRY``; a residue
lists a backbone row only where its value differs (glycine, proline).
"""

# residue  atom  group        x        y        z
IDEALISED_ATOM_POSITIONS = """
ALA N   0  -0.525   1.363   0.000
ALA CA  0   0.000   0.000   0.000
ALA C   0   1.526  -0.000  -0.000
ALA CB  0  -0.529  -0.774  -1.205
ALA O   3   0.627   1.062   0.000
ARG N   0  -0.524   1.362  -0.000
ARG CA  0   0.000   0.000   0.000
ARG C   0   1.525  -0.000  -0.000
ARG CB  0  -0.524  -0.778  -1.209
ARG O   3   0.626   1.062   0.000
ARG CG  4   0.616   1.390  -0.000
ARG CD  5   0.564   1.414   0.000
ARG NE  6   0.539   1.357  -0.000
ARG NH1 7   0.206   2.301   0.000
ARG NH2 7   2.078   0.978  -0.000
ARG CZ  7   0.758   1.093  -0.000
ASN N   0  -0.536   1.357   0.000
ASN CA  0   0.000   0.000   0.000
ASN C   0   1.526  -0.000  -0.000
ASN CB  0  -0.531  -0.787  -1.200
ASN O   3   0.625   1.062   0.000
ASN CG  4   0.584   1.399   0.000
ASN ND2 5   0.593  -1.188   0.001
ASN OD1 5   0.633   1.059   0.000
ASP N   0  -0.525   1.362  -0.000
ASP CA  0   0.000   0.000   0.000
ASP C   0   1.527   0.000  -0.000
ASP CB  0  -0.526  -0.778  -1.208
ASP O   3   0.626   1.062  -0.000
ASP CG  4   0.593   1.398  -0.000
ASP OD1 5   0.610   1.091   0.000
ASP OD2 5   0.592  -1.101  -0.003
CYS N   0  -0.522   1.362  -0.000
CYS CA  0   0.000   0.000   0.000
CYS C   0   1.524   0.000   0.000
CYS CB  0  -0.519  -0.773  -1.212
CYS O   3   0.625   1.062  -0.000
CYS SG  4   0.728   1.653   0.000
GLN N   0  -0.526   1.361  -0.000
GLN CA  0   0.000   0.000   0.000
GLN C   0   1.526   0.000   0.000
GLN CB  0  -0.525  -0.779  -1.207
GLN O   3   0.626   1.062  -0.000
GLN CG  4   0.615   1.393   0.000
GLN CD  5   0.587   1.399  -0.000
GLN NE2 6   0.593  -1.189  -0.001
GLN OE1 6   0.634   1.060   0.000
GLU N   0  -0.528   1.361   0.000
GLU CA  0   0.000   0.000   0.000
GLU C   0   1.526  -0.000  -0.000
GLU CB  0  -0.526  -0.781  -1.207
GLU O   3   0.626   1.062   0.000
GLU CG  4   0.615   1.392   0.000
GLU CD  5   0.600   1.397   0.000
GLU OE1 6   0.607   1.095  -0.000
GLU OE2 6   0.589  -1.104  -0.001
GLY N   0  -0.572   1.337   0.000
GLY CA  0   0.000   0.000   0.000
GLY C   0   1.517  -0.000  -0.000
GLY O   3   0.626   1.062  -0.000
HIS N   0  -0.527   1.360   0.000
HIS CA  0   0.000   0.000   0.000
HIS C   0   1.525   0.000   0.000
HIS CB  0  -0.525  -0.778  -1.208
HIS O   3   0.625   1.063   0.000
HIS CG  4   0.600   1.370  -0.000
HIS CD2 5   0.889  -1.021   0.003
HIS ND1 5   0.744   1.160  -0.000
HIS CE1 5   2.030   0.851   0.002
HIS NE2 5   2.145  -0.466   0.004
ILE N   0  -0.493   1.373  -0.000
ILE CA  0   0.000   0.000   0.000
ILE C   0   1.527  -0.000  -0.000
ILE CB  0  -0.536  -0.793  -1.213
ILE O   3   0.627   1.062  -0.000
ILE CG1 4   0.534   1.437  -0.000
ILE CG2 4   0.540  -0.785  -1.199
ILE CD1 5   0.619   1.391   0.000
LEU N   0  -0.520   1.363   0.000
LEU CA  0   0.000   0.000   0.000
LEU C   0   1.525  -0.000  -0.000
LEU CB  0  -0.522  -0.773  -1.214
LEU O   3   0.625   1.063  -0.000
LEU CG  4   0.678   1.371   0.000
LEU CD1 5   0.530   1.430  -0.000
LEU CD2 5   0.535  -0.774   1.200
LYS N   0  -0.526   1.362  -0.000
LYS CA  0   0.000   0.000   0.000
LYS C   0   1.526   0.000   0.000
LYS CB  0  -0.524  -0.778  -1.208
LYS O   3   0.626   1.062  -0.000
LYS CG  4   0.619   1.390   0.000
LYS CD  5   0.559   1.417   0.000
LYS CE  6   0.560   1.416   0.000
LYS NZ  7   0.554   1.387   0.000
MET N   0  -0.521   1.364  -0.000
MET CA  0   0.000   0.000   0.000
MET C   0   1.525   0.000   0.000
MET CB  0  -0.523  -0.776  -1.210
MET O   3   0.625   1.062  -0.000
MET CG  4   0.613   1.391  -0.000
MET SD  5   0.703   1.695   0.000
MET CE  6   0.320   1.786  -0.000
PHE N   0  -0.518   1.363   0.000
PHE CA  0   0.000   0.000   0.000
PHE C   0   1.524   0.000  -0.000
PHE CB  0  -0.525  -0.776  -1.212
PHE O   3   0.626   1.062  -0.000
PHE CG  4   0.607   1.377   0.000
PHE CD1 5   0.709   1.195  -0.000
PHE CD2 5   0.706  -1.196   0.000
PHE CE1 5   2.102   1.198  -0.000
PHE CE2 5   2.098  -1.201  -0.000
PHE CZ  5   2.794  -0.003  -0.001
PRO N   0  -0.566   1.351  -0.000
PRO CA  0   0.000   0.000   0.000
PRO C   0   1.527  -0.000   0.000
PRO CB  0  -0.546  -0.611  -1.293
PRO O   3   0.621   1.066   0.000
PRO CG  4   0.382   1.445   0.000
PRO CD  5   0.477   1.424   0.000
SER N   0  -0.529   1.360  -0.000
SER CA  0   0.000   0.000   0.000
SER C   0   1.525  -0.000  -0.000
SER CB  0  -0.518  -0.777  -1.211
SER O   3   0.626   1.062  -0.000
SER OG  4   0.503   1.325   0.000
THR N   0  -0.517   1.364   0.000
THR CA  0   0.000   0.000   0.000
THR C   0   1.526   0.000  -0.000
THR CB  0  -0.516  -0.793  -1.215
THR O   3   0.626   1.062   0.000
THR CG2 4   0.550  -0.718  -1.228
THR OG1 4   0.472   1.353   0.000
TRP N   0  -0.521   1.363   0.000
TRP CA  0   0.000   0.000   0.000
TRP C   0   1.525  -0.000   0.000
TRP CB  0  -0.523  -0.776  -1.212
TRP O   3   0.627   1.062   0.000
TRP CG  4   0.609   1.370  -0.000
TRP CD1 5   0.824   1.091   0.000
TRP CD2 5   0.854  -1.148  -0.005
TRP CE2 5   2.186  -0.678  -0.007
TRP CE3 5   0.622  -2.530  -0.007
TRP NE1 5   2.140   0.690  -0.004
TRP CH2 5   3.028  -2.890  -0.013
TRP CZ2 5   3.283  -1.543  -0.011
TRP CZ3 5   1.715  -3.389  -0.011
TYR N   0  -0.522   1.362   0.000
TYR CA  0   0.000   0.000   0.000
TYR C   0   1.524  -0.000  -0.000
TYR CB  0  -0.522  -0.776  -1.213
TYR O   3   0.627   1.062  -0.000
TYR CG  4   0.607   1.382  -0.000
TYR CD1 5   0.716   1.195  -0.000
TYR CD2 5   0.713  -1.194  -0.001
TYR CE1 5   2.107   1.200  -0.002
TYR CE2 5   2.104  -1.201  -0.003
TYR OH  5   4.168  -0.002  -0.005
TYR CZ  5   2.791  -0.001  -0.003
VAL N   0  -0.494   1.373  -0.000
VAL CA  0   0.000   0.000   0.000
VAL C   0   1.527  -0.000  -0.000
VAL CB  0  -0.533  -0.795  -1.213
VAL O   3   0.627   1.062  -0.000
VAL CG1 4   0.540   1.429  -0.000
VAL CG2 4   0.533  -0.776   1.203
"""

# atoms        mean  stddev
STANDARD_BACKBONE_GEOMETRY = """
N-CA          1.459  0.020
CA-C          1.525  0.026
C-O           1.229  0.019
N-CA-C        111.0    2.7
CA-C-O        120.1    2.1
"""

# residue  atoms      mean  stddev
BOND_GEOMETRY = """
ALA CA-CB         1.520  0.021
ALA N-CA-CB       110.1    1.4
ALA CB-CA-C       110.1    1.5
ARG CA-CB         1.535  0.022
ARG CB-CG         1.521  0.027
ARG CG-CD         1.515  0.025
ARG CD-NE         1.460  0.017
ARG NE-CZ         1.326  0.013
ARG CZ-NH1        1.326  0.013
ARG CZ-NH2        1.326  0.013
ARG N-CA-CB       110.6    1.8
ARG CB-CA-C       110.4    2.0
ARG CA-CB-CG      113.4    2.2
ARG CB-CG-CD      111.6    2.6
ARG CG-CD-NE      111.8    2.1
ARG CD-NE-CZ      123.6    1.4
ARG NE-CZ-NH1     120.3    0.5
ARG NE-CZ-NH2     120.3    0.5
ARG NH1-CZ-NH2    119.4    1.1
ASN CA-CB         1.527  0.026
ASN CB-CG         1.506  0.023
ASN CG-OD1        1.235  0.022
ASN CG-ND2        1.324  0.025
ASN N-CA-CB       110.6    1.8
ASN CB-CA-C       110.4    2.0
ASN CA-CB-CG      113.4    2.2
ASN CB-CG-ND2     116.7    2.4
ASN CB-CG-OD1     121.6    2.0
ASN ND2-CG-OD1    121.9    2.3
ASP CA-CB         1.535  0.022
ASP CB-CG         1.513  0.021
ASP CG-OD1        1.249  0.023
ASP CG-OD2        1.249  0.023
ASP N-CA-CB       110.6    1.8
ASP CB-CA-C       110.4    2.0
ASP CA-CB-CG      113.4    2.2
ASP CB-CG-OD1     118.3    0.9
ASP CB-CG-OD2     118.3    0.9
ASP OD1-CG-OD2    123.3    1.9
CYS CA-CB         1.526  0.013
CYS CB-SG         1.812  0.016
CYS N-CA-CB       110.8    1.5
CYS CB-CA-C       111.5    1.2
CYS CA-CB-SG      114.2    1.1
GLN CA-CB         1.535  0.022
GLN CB-CG         1.521  0.027
GLN CG-CD         1.506  0.023
GLN CD-OE1        1.235  0.022
GLN CD-NE2        1.324  0.025
GLN N-CA-CB       110.6    1.8
GLN CB-CA-C       110.4    2.0
GLN CA-CB-CG      113.4    2.2
GLN CB-CG-CD      111.6    2.6
GLN CG-CD-OE1     121.6    2.0
GLN CG-CD-NE2     116.7    2.4
GLN OE1-CD-NE2    121.9    2.3
GLU CA-CB         1.535  0.022
GLU CB-CG         1.517  0.019
GLU CG-CD         1.515  0.015
GLU CD-OE1        1.252  0.011
GLU CD-OE2        1.252  0.011
GLU N-CA-CB       110.6    1.8
GLU CB-CA-C       110.4    2.0
GLU CA-CB-CG      113.4    2.2
GLU CB-CG-CD      114.2    2.7
GLU CG-CD-OE1     118.3    2.0
GLU CG-CD-OE2     118.3    2.0
GLU OE1-CD-OE2    123.3    1.2
GLY N-CA          1.456  0.015
GLY CA-C          1.514  0.016
GLY C-O           1.232  0.016
GLY N-CA-C        113.1    2.5
GLY CA-C-O        120.6    1.8
HIS CA-CB         1.535  0.022
HIS CB-CG         1.492  0.016
HIS CG-ND1        1.369  0.015
HIS CG-CD2        1.353  0.017
HIS ND1-CE1       1.343  0.025
HIS CD2-NE2       1.415  0.021
HIS CE1-NE2       1.322  0.023
HIS N-CA-CB       110.6    1.8
HIS CB-CA-C       110.4    2.0
HIS CA-CB-CG      113.6    1.7
HIS CB-CG-ND1     123.2    2.5
HIS CB-CG-CD2     130.8    3.1
HIS CG-ND1-CE1    108.2    1.4
HIS ND1-CE1-NE2   109.9    2.2
HIS CE1-NE2-CD2   106.6    2.5
HIS NE2-CD2-CG    109.2    1.9
HIS CD2-CG-ND1    106.0    1.4
ILE CA-CB         1.544  0.023
ILE CB-CG1        1.536  0.028
ILE CB-CG2        1.524  0.031
ILE CG1-CD1       1.500  0.069
ILE N-CA-CB       110.8    2.3
ILE CB-CA-C       111.6    2.0
ILE CA-CB-CG1     111.0    1.9
ILE CB-CG1-CD1    113.9    2.8
ILE CA-CB-CG2     110.9    2.0
ILE CG1-CB-CG2    111.4    2.2
LEU CA-CB         1.533  0.023
LEU CB-CG         1.521  0.029
LEU CG-CD1        1.514  0.037
LEU CG-CD2        1.514  0.037
LEU N-CA-CB       110.4    2.0
LEU CB-CA-C       110.2    1.9
LEU CA-CB-CG      115.3    2.3
LEU CB-CG-CD1     111.0    1.7
LEU CB-CG-CD2     111.0    1.7
LEU CD1-CG-CD2    110.5    3.0
LYS CA-CB         1.535  0.022
LYS CB-CG         1.521  0.027
LYS CG-CD         1.520  0.034
LYS CD-CE         1.508  0.025
LYS CE-NZ         1.486  0.025
LYS N-CA-CB       110.6    1.8
LYS CB-CA-C       110.4    2.0
LYS CA-CB-CG      113.4    2.2
LYS CB-CG-CD      111.6    2.6
LYS CG-CD-CE      111.9    3.0
LYS CD-CE-NZ      111.7    2.3
MET CA-CB         1.535  0.022
MET CB-CG         1.509  0.032
MET CG-SD         1.807  0.026
MET SD-CE         1.774  0.056
MET N-CA-CB       110.6    1.8
MET CB-CA-C       110.4    2.0
MET CA-CB-CG      113.3    1.7
MET CB-CG-SD      112.4    3.0
MET CG-SD-CE      100.2    1.6
PHE CA-CB         1.535  0.022
PHE CB-CG         1.509  0.017
PHE CG-CD1        1.383  0.015
PHE CG-CD2        1.383  0.015
PHE CD1-CE1       1.388  0.020
PHE CD2-CE2       1.388  0.020
PHE CE1-CZ        1.369  0.019
PHE CE2-CZ        1.369  0.019
PHE N-CA-CB       110.6    1.8
PHE CB-CA-C       110.4    2.0
PHE CA-CB-CG      113.9    2.4
PHE CB-CG-CD1     120.8    0.7
PHE CB-CG-CD2     120.8    0.7
PHE CD1-CG-CD2    118.3    1.3
PHE CG-CD1-CE1    120.8    1.1
PHE CG-CD2-CE2    120.8    1.1
PHE CD1-CE1-CZ    120.1    1.2
PHE CD2-CE2-CZ    120.1    1.2
PHE CE1-CZ-CE2    120.0    1.8
PRO CA-CB         1.531  0.020
PRO CB-CG         1.495  0.050
PRO CG-CD         1.502  0.033
PRO CD-N          1.474  0.014
PRO N-CA          1.468  0.017
PRO CA-C          1.524  0.020
PRO C-O           1.228  0.020
PRO N-CA-CB       103.3    1.2
PRO CB-CA-C       111.7    2.1
PRO CA-CB-CG      104.8    1.9
PRO CB-CG-CD      106.5    3.9
PRO CG-CD-N       103.2    1.5
PRO CA-N-CD       111.7    1.4
PRO N-CA-C        112.1    2.6
PRO CA-C-O        120.2    2.4
SER CA-CB         1.525  0.015
SER CB-OG         1.418  0.013
SER N-CA-CB       110.5    1.5
SER CB-CA-C       110.1    1.9
SER CA-CB-OG      111.2    2.7
THR CA-CB         1.529  0.026
THR CB-OG1        1.428  0.020
THR CB-CG2        1.519  0.033
THR N-CA-CB       110.3    1.9
THR CB-CA-C       111.6    2.7
THR CA-CB-OG1     109.0    2.1
THR CA-CB-CG2     112.4    1.4
THR OG1-CB-CG2    110.0    2.3
TRP CA-CB         1.535  0.022
TRP CB-CG         1.498  0.018
TRP CG-CD1        1.363  0.014
TRP CG-CD2        1.432  0.017
TRP CD1-NE1       1.375  0.017
TRP NE1-CE2       1.371  0.013
TRP CD2-CE2       1.409  0.012
TRP CD2-CE3       1.399  0.015
TRP CE2-CZ2       1.393  0.017
TRP CE3-CZ3       1.380  0.017
TRP CZ2-CH2       1.369  0.019
TRP CZ3-CH2       1.396  0.016
TRP N-CA-CB       110.6    1.8
TRP CB-CA-C       110.4    2.0
TRP CA-CB-CG      113.7    1.9
TRP CB-CG-CD1     127.0    1.3
TRP CB-CG-CD2     126.6    1.3
TRP CD1-CG-CD2    106.3    0.8
TRP CG-CD1-NE1    110.1    1.0
TRP CD1-NE1-CE2   109.0    0.9
TRP NE1-CE2-CD2   107.3    1.0
TRP CE2-CD2-CG    107.3    0.8
TRP CG-CD2-CE3    133.9    0.9
TRP NE1-CE2-CZ2   130.4    1.1
TRP CE3-CD2-CE2   118.7    1.2
TRP CD2-CE2-CZ2   122.3    1.2
TRP CE2-CZ2-CH2   117.4    1.0
TRP CZ2-CH2-CZ3   121.6    1.2
TRP CH2-CZ3-CE3   121.2    1.1
TRP CZ3-CE3-CD2   118.8    1.3
TYR CA-CB         1.535  0.022
TYR CB-CG         1.512  0.015
TYR CG-CD1        1.387  0.013
TYR CG-CD2        1.387  0.013
TYR CD1-CE1       1.389  0.015
TYR CD2-CE2       1.389  0.015
TYR CE1-CZ        1.381  0.013
TYR CE2-CZ        1.381  0.013
TYR CZ-OH         1.374  0.017
TYR N-CA-CB       110.6    1.8
TYR CB-CA-C       110.4    2.0
TYR CA-CB-CG      113.4    1.9
TYR CB-CG-CD1     121.0    0.6
TYR CB-CG-CD2     121.0    0.6
TYR CD1-CG-CD2    117.9    1.1
TYR CG-CD1-CE1    121.3    0.8
TYR CG-CD2-CE2    121.3    0.8
TYR CD1-CE1-CZ    119.8    0.9
TYR CD2-CE2-CZ    119.8    0.9
TYR CE1-CZ-CE2    119.8    1.6
TYR CE1-CZ-OH     120.1    2.7
TYR CE2-CZ-OH     120.1    2.7
VAL CA-CB         1.543  0.021
VAL CB-CG1        1.524  0.021
VAL CB-CG2        1.524  0.021
VAL N-CA-CB       111.5    2.2
VAL CB-CA-C       111.4    1.9
VAL CA-CB-CG1     110.9    1.5
VAL CA-CB-CG2     110.9    1.5
VAL CG1-CB-CG2    110.9    1.6
"""
