"""An export-declaration history written apart from the project's own generator.

What it is for: evaluating the diversion-risk model on a history whose diversion
mechanisms it was not designed around. This module was written from the input contract
(`/work/shared/data-contract.md`) and public domain notes (`/work/shared/domain-facts.md`)
only, without reading the project's generator, features or models, so that a good score
here says something the project's own synthetic history cannot.

`write_independent_history(out_dir, rows, ...)` writes `declarations`, `seizures` (the
contract tables) and `ground_truth` (`declaration_id`, `diverted`, `mechanism`) as Parquet
or CSV. `python -m benchmarks.independent_history --out DIR --rows N` does the same from
the command line. Output is byte-identical for a given seed.

The world
---------
*Legitimate trade.* A few thousand Indian exporters (about one per 90 declarations, at
most 6,000) with log-normal, heavy-tailed sizes, in five kinds: formulation makers, API
makers, chemical traders, merchant exporters and licensed specialists in controlled
goods. Each has a stable mix of one to six products from a catalogue of about forty
(generic tablets and syrups, APIs, solvents and acids, internationally controlled
medicines and precursors, and two abused but - in this world - unscheduled tablets,
tapentadol and carisoprodol). About a tenth of legitimate declarations are controlled
goods; they carry an export authorisation (NC/EA/... or NC/NOC/...) 97 % of the time.
Each exporter has a set of foreign buyers that grows over its life, with repeat orders
concentrated on its oldest buyers; about a third of relationships are with large
distributors shared by many exporters. Each firm files through one or two customs
brokers of its home port cluster (or itself), ships from a usual sea and air port, and
has its own price level, consignment size and air-freight habit. Values, weights and
quantities follow per-product unit values and consignment sizes; sea, air, courier, post
and, to Nepal, Bangladesh and Bhutan, road and rail. Hub buyers (UAE, Singapore, Hong
Kong, Malaysia, Belgium) often re-export to a third country; sea and air routes to
Africa and Latin America are often transshipped. Filing days follow a season (fiscal
year-end peak in March, Diwali and year-end dips, quiet weekends, slow growth). Some
firms enter or leave during the history. Tariff lines are plausible ITC-HS 8-digit
lines, not an official mapping.

*Diversion* (about 2 % of declarations after caught diverters react) is organised in a
few networks, each focused on a group of goods (tramadol-type tablets to West and North
Africa, benzodiazepines and zolpidem, codeine syrup, ephedrine/pseudoephedrine, acetic
anhydride/permanganate) and owning a rotating set of foreign buyers with staggered
lifetimes, one or two complicit brokers and a home port cluster. Diverted shipments are
built by the same code as legitimate ones for the same goods: same unit values, sizes,
transport modes, routes and authorisation rates; payment terms lean only slightly more to
advance payment. Mechanisms (share of diverted declarations before reactions):

- `network_merchant` (22 %): ordinary merchant/API/chemical exporters, licensed for the
  network's goods, that from some date send part of their controlled trade to network
  buyers, often through the network's broker.
- `licensed_drift` (18 %): established licensed exporters whose buyer set drifts, in the
  second half of the history and increasingly, toward network buyers (that by then have
  received goods from other, sometimes caught, exporters).
- `buyer_rotation` (13 %): a network buyer orders one to three loads at a time from
  otherwise legitimate exporters that carry the goods, moving from firm to firm.
- `front_company` (12 %): new exporters that appear, ship three to twelve loads within
  weeks to established network buyers (usually through a complicit broker) and vanish.
- `misdeclared_generic` (11 %): controlled tablets declared as a generic formulation
  (diclofenac, paracetamol ...) or under a vague description, without authorisation and
  at the cover goods' value; by network merchants (to network buyers) and by a few
  merchant exporters outside the networks (to one-off West African buyers).
- `volume_surge` (7 %): a licensed exporter's controlled shipments become larger and
  more frequent for two to four months, to a network buyer or to one of its own buyers.
- `undervalued` (6 %): network merchants' shipments declared at 45-75 % of the value.
- `courier_parcels` (6 %): short-lived online vendors sending small courier and postal
  parcels of benzodiazepines/tramadol/tapentadol to the US, Australia and Britain, mostly
  misdeclared, to a re-shipper (a network buyer) or one-off private consignees.
- `lone_diverter` (5 %): exporters outside any network that divert to one private buyer.

Network buyers also receive some legitimate cover trade, and many legitimate buyers
trade with several exporters, so sharing a buyer is not by itself a sign.

*Seizures.* 30-60 % of diverted declarations are seized (by mechanism): at the origin
within days, at the transshipment point, at destination weeks later, or after
investigations months later (a good part beyond 180 days); seizures after the end of the
history are not known and left out. Most seizure rows name the declaration, exporter and
consignee; some only the declaration, some only the consignee or the exporter (the link
to the declaration lost). Intelligence reports name network buyers or network exporters
without a declaration, and a few name innocent firms. Label noise: a small share of
legitimate shipments is seized too (mostly controlled goods filed without
authorisation). A diverter whose seizure names it reacts: stops (and sometimes closes),
pauses for months, moves to another network buyer, or carries on.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------- reference data


class Product(NamedTuple):
    key: str
    hs: str
    kind: str  # formulation, abused, cmed, api, capi, chemical, precursor
    substance: str
    unit: str  # NOS (packs), LTR, KGM
    usd_per_kg: float  # FOB value per kg net
    sea_kg: float  # median gross kg of a sea consignment
    authorisation: str  # "EA" (narcotic/psychotropic), "NOC" (precursor) or ""
    descriptions: tuple[str, ...]


PRODUCTS: tuple[Product, ...] = (
    Product("paracetamol_tab", "30049099", "formulation", "paracetamol", "NOS", 6.0, 3500, "",
            ("PARACETAMOL TABLETS BP 500MG", "PARACETAMOL TABLETS 500 MG 10X10 BLISTER",
             "PARACETAMOL 650MG TABLETS")),
    Product("diclofenac_tab", "30049099", "formulation", "diclofenac", "NOS", 9.0, 2500, "",
            ("DICLOFENAC SODIUM TABLETS 50MG", "DICLOFENAC SODIUM GASTRO-RESISTANT TABLETS BP",
             "DICLOFENAC TABLETS 100MG SR")),
    Product("metformin_tab", "30049099", "formulation", "metformin", "NOS", 7.0, 3000, "",
            ("METFORMIN HYDROCHLORIDE TABLETS 500MG", "METFORMIN HCL TABLETS USP 850 MG",
             "METFORMIN ER TABLETS 1000MG")),
    Product("atorvastatin_tab", "30049099", "formulation", "atorvastatin", "NOS", 26.0, 1200, "",
            ("ATORVASTATIN CALCIUM TABLETS 20MG", "ATORVASTATIN TABLETS USP 10 MG",
             "ATORVASTATIN 40MG FILM COATED TABLETS")),
    Product("omeprazole_cap", "30049099", "formulation", "omeprazole", "NOS", 18.0, 1500, "",
            ("OMEPRAZOLE CAPSULES 20MG", "OMEPRAZOLE DELAYED RELEASE CAPSULES USP",
             "OMEPRAZOLE GASTRO-RESISTANT CAPSULES 40MG")),
    Product("amoxicillin_cap", "30041030", "formulation", "amoxicillin", "NOS", 14.0, 3000, "",
            ("AMOXICILLIN CAPSULES BP 500MG", "AMOXYCILLIN TRIHYDRATE CAPSULES 250MG",
             "AMOXICILLIN AND CLAVULANATE TABLETS")),
    Product("azithromycin_tab", "30042019", "formulation", "azithromycin", "NOS", 30.0, 1000, "",
            ("AZITHROMYCIN TABLETS USP 500MG", "AZITHROMYCIN 250MG TABLETS",
             "AZITHROMYCIN DIHYDRATE TABLETS")),
    Product("ciprofloxacin_tab", "30042099", "formulation", "ciprofloxacin", "NOS", 12.0, 2000, "",
            ("CIPROFLOXACIN TABLETS USP 500MG", "CIPROFLOXACIN HCL TABLETS 250 MG",
             "CIPROFLOXACIN 750MG TABLETS")),
    Product("multivitamin_tab", "30045090", "formulation", "multivitamin", "NOS", 8.0, 2500, "",
            ("MULTIVITAMIN TABLETS", "VITAMIN B COMPLEX WITH ZINC TABLETS",
             "MULTIVITAMIN AND MINERAL CAPSULES")),
    Product("dextromethorphan_syr", "30049099", "formulation", "dextromethorphan", "LTR", 3.0, 6000, "",
            ("DEXTROMETHORPHAN COUGH SYRUP 100ML", "COUGH SYRUP (DEXTROMETHORPHAN HBR) 60ML",
             "ANTITUSSIVE SYRUP 100 ML")),
    Product("tapentadol_tab", "30049099", "abused", "tapentadol", "NOS", 20.0, 1500, "",
            ("TAPENTADOL TABLETS 100MG", "TAPENTADOL HYDROCHLORIDE TABLETS 50MG",
             "TAPENTADOL ER TABLETS 200MG")),
    Product("carisoprodol_tab", "30049099", "abused", "carisoprodol", "NOS", 10.0, 2000, "",
            ("CARISOPRODOL TABLETS 350MG", "CARISOPRODOL TABLETS USP 500 MG", "CARISOPRODOL 350 MG TABS")),
    Product("tramadol_tab", "30049099", "cmed", "tramadol", "NOS", 22.0, 1500, "EA",
            ("TRAMADOL HYDROCHLORIDE TABLETS 100MG", "TRAMADOL HCL CAPSULES 50MG",
             "TRAMADOL HCL ER TABLETS 200 MG")),
    Product("alprazolam_tab", "30049099", "cmed", "alprazolam", "NOS", 35.0, 600, "EA",
            ("ALPRAZOLAM TABLETS USP 0.5MG", "ALPRAZOLAM TABLETS 1 MG",
             "ALPRAZOLAM EXTENDED RELEASE TABLETS 2MG")),
    Product("diazepam_tab", "30049099", "cmed", "diazepam", "NOS", 18.0, 800, "EA",
            ("DIAZEPAM TABLETS BP 5MG", "DIAZEPAM TABLETS 10 MG", "DIAZEPAM TABLETS USP 2MG")),
    Product("zolpidem_tab", "30049099", "cmed", "zolpidem", "NOS", 40.0, 500, "EA",
            ("ZOLPIDEM TARTRATE TABLETS 10MG", "ZOLPIDEM TABLETS USP 5 MG", "ZOLPIDEM ER TABLETS 12.5MG")),
    Product("codeine_syr", "30049099", "cmed", "codeine", "LTR", 5.0, 4000, "EA",
            ("CODEINE PHOSPHATE AND CHLORPHENIRAMINE SYRUP 100ML", "CODEINE LINCTUS BP 100 ML",
             "CODEINE COUGH SYRUP 100ML")),
    Product("paracetamol_api", "29242990", "api", "paracetamol", "KGM", 4.5, 8000, "",
            ("PARACETAMOL IP (BULK DRUG)", "PARACETAMOL USP POWDER", "ACETAMINOPHEN API")),
    Product("ibuprofen_api", "29163990", "api", "ibuprofen", "KGM", 14.0, 4000, "",
            ("IBUPROFEN BP", "IBUPROFEN USP (BULK DRUG)", "IBUPROFEN API 25 GRADE")),
    Product("metformin_api", "29252990", "api", "metformin", "KGM", 4.0, 9000, "",
            ("METFORMIN HYDROCHLORIDE BP", "METFORMIN HCL USP (API)", "METFORMIN HYDROCHLORIDE IP")),
    Product("amoxicillin_api", "29411030", "api", "amoxicillin", "KGM", 25.0, 3000, "",
            ("AMOXICILLIN TRIHYDRATE BP (COMPACTED)", "AMOXYCILLIN TRIHYDRATE USP POWDER",
             "AMOXICILLIN TRIHYDRATE API")),
    Product("ciprofloxacin_api", "29335990", "api", "ciprofloxacin", "KGM", 20.0, 2000, "",
            ("CIPROFLOXACIN HYDROCHLORIDE USP", "CIPROFLOXACIN HCL BP (BULK DRUG)", "CIPROFLOXACIN BASE")),
    Product("omeprazole_api", "29339990", "api", "omeprazole", "KGM", 60.0, 800, "",
            ("OMEPRAZOLE USP", "OMEPRAZOLE PELLETS 8.5%", "OMEPRAZOLE MAGNESIUM EP")),
    Product("atorvastatin_api", "29339990", "api", "atorvastatin", "KGM", 150.0, 300, "",
            ("ATORVASTATIN CALCIUM USP", "ATORVASTATIN CALCIUM TRIHYDRATE EP",
             "ATORVASTATIN CALCIUM (AMORPHOUS)")),
    Product("tramadol_api", "29221990", "capi", "tramadol", "KGM", 60.0, 600, "EA",
            ("TRAMADOL HYDROCHLORIDE BP", "TRAMADOL HCL USP (BULK DRUG)", "TRAMADOL HYDROCHLORIDE IP")),
    Product("alprazolam_api", "29339100", "capi", "alprazolam", "KGM", 900.0, 25, "EA",
            ("ALPRAZOLAM USP", "ALPRAZOLAM BP (BULK DRUG)", "ALPRAZOLAM API")),
    Product("diazepam_api", "29339100", "capi", "diazepam", "KGM", 150.0, 100, "EA",
            ("DIAZEPAM BP", "DIAZEPAM USP (BULK DRUG)", "DIAZEPAM IP")),
    Product("ephedrine_api", "29394100", "capi", "ephedrine", "KGM", 70.0, 400, "NOC",
            ("EPHEDRINE HYDROCHLORIDE BP", "EPHEDRINE HCL USP", "EPHEDRINE SULPHATE BP")),
    Product("pseudoephedrine_api", "29394200", "capi", "pseudoephedrine", "KGM", 60.0, 500, "NOC",
            ("PSEUDOEPHEDRINE HYDROCHLORIDE USP", "PSEUDOEPHEDRINE HCL BP", "PSEUDOEPHEDRINE SULPHATE USP")),
    Product("acetic_anhydride", "29152400", "precursor", "acetic anhydride", "KGM", 1.2, 16000, "NOC",
            ("ACETIC ANHYDRIDE 99%", "ACETIC ANHYDRIDE (TECHNICAL GRADE)", "ACETIC ANHYDRIDE IN DRUMS")),
    Product("permanganate", "28416100", "precursor", "potassium permanganate", "KGM", 2.0, 12000, "NOC",
            ("POTASSIUM PERMANGANATE", "POTASSIUM PERMANGANATE TECHNICAL",
             "POTASSIUM PERMANGANATE CRYSTALS")),
    Product("acetone", "29141100", "chemical", "acetone", "KGM", 1.0, 18000, "",
            ("ACETONE", "ACETONE (TECHNICAL GRADE)", "DIMETHYL KETONE")),
    Product("toluene", "29023000", "chemical", "toluene", "KGM", 0.9, 18000, "",
            ("TOLUENE", "TOLUENE (NITRATION GRADE)", "TOLUOL")),
    Product("methanol", "29051100", "chemical", "methanol", "KGM", 0.5, 20000, "",
            ("METHANOL", "METHYL ALCOHOL", "METHANOL (INDUSTRIAL GRADE)")),
    Product("ipa", "29051220", "chemical", "isopropyl alcohol", "LTR", 1.2, 15000, "",
            ("ISOPROPYL ALCOHOL", "ISO PROPYL ALCOHOL IP", "IPA 99.9%")),
    Product("citric_acid", "29181400", "chemical", "citric acid", "KGM", 1.0, 18000, "",
            ("CITRIC ACID MONOHYDRATE", "CITRIC ACID ANHYDROUS BP", "CITRIC ACID")),
    Product("caustic_soda", "28151100", "chemical", "sodium hydroxide", "KGM", 0.5, 20000, "",
            ("SODIUM HYDROXIDE FLAKES", "CAUSTIC SODA FLAKES 98%", "CAUSTIC SODA PEARLS")),
    Product("hydrochloric_acid", "28061000", "chemical", "hydrochloric acid", "KGM", 0.2, 20000, "",
            ("HYDROCHLORIC ACID 33%", "MURIATIC ACID", "HYDROCHLORIC ACID (COMMERCIAL)")),
)  # fmt: skip
PRODUCT_INDEX: dict[str, int] = {p.key: i for i, p in enumerate(PRODUCTS)}
KINDS: tuple[str, ...] = ("formulation", "abused", "cmed", "api", "capi", "chemical", "precursor")
P_KIND = np.array([KINDS.index(p.kind) for p in PRODUCTS])
P_USD = np.array([p.usd_per_kg for p in PRODUCTS])
P_SEA_KG = np.array([p.sea_kg for p in PRODUCTS])
P_CONTROLLED = np.array([p.authorisation != "" for p in PRODUCTS])
P_NOC = np.array([p.authorisation == "NOC" for p in PRODUCTS])
P_UNIT = np.array([p.unit for p in PRODUCTS], dtype=object)
P_HS = np.array([p.hs for p in PRODUCTS], dtype=object)
P_SUBSTANCE = np.array([p.substance for p in PRODUCTS], dtype=object)
#: Share of air freight by product kind (before the exporter's own habit).
KIND_AIR = np.array([0.22, 0.22, 0.25, 0.40, 0.45, 0.03, 0.05])
#: Net kg of one pack (counted in NOS) or litres per kg for liquids.
PACK_KG = 0.045
LITRES_PER_KG = 1 / 1.1
VAGUE_DESCRIPTIONS: tuple[str, ...] = (
    "PHARMACEUTICAL PRODUCTS AS PER INVOICE",
    "PHARMACEUTICAL FORMULATIONS (TABLETS)",
    "ALLOPATHIC MEDICINES",
    "MEDICINES FOR RETAIL SALE",
    "GENERIC MEDICINES ASSORTED",
)

REGIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "regulated": (("US", .35), ("GB", .15), ("DE", .10), ("NL", .08), ("FR", .07), ("IT", .06),
                  ("ES", .05), ("CA", .06), ("AU", .05), ("JP", .03)),
    "west_africa": (("NG", .35), ("GH", .18), ("CI", .08), ("CM", .07), ("SN", .06), ("BJ", .06),
                    ("TG", .06), ("SL", .05), ("NE", .04), ("LR", .05)),
    "east_south_africa": (("KE", .25), ("ZA", .25), ("TZ", .15), ("UG", .12), ("ET", .12), ("MZ", .06),
                          ("ZM", .05)),
    "mena": (("EG", .25), ("SA", .30), ("LY", .10), ("IQ", .15), ("JO", .10), ("DZ", .10)),
    "hub": (("AE", .45), ("SG", .20), ("HK", .15), ("MY", .10), ("BE", .10)),
    "latam": (("BR", .30), ("MX", .20), ("CO", .12), ("PE", .10), ("CL", .10), ("GT", .06), ("DO", .06),
              ("EC", .06)),
    "asia": (("VN", .14), ("PH", .14), ("ID", .10), ("TH", .06), ("LK", .10), ("MM", .08), ("KH", .05),
             ("RU", .12), ("UZ", .07), ("UA", .06), ("KR", .04), ("CN", .04)),
    "neighbour": (("NP", .45), ("BD", .45), ("BT", .10)),
}  # fmt: skip
REGION_NAMES: tuple[str, ...] = tuple(REGIONS)
COUNTRIES: tuple[str, ...] = tuple(c for r in REGIONS.values() for c, _ in r)
COUNTRY_REGION = np.array([REGION_NAMES.index(r) for r, cs in REGIONS.items() for _ in cs])
_R = {name: i for i, name in enumerate(REGION_NAMES)}
#: Where hub buyers re-export to (region weights).
HUB_ONWARD = np.array([0.0, 0.30, 0.15, 0.20, 0.0, 0.10, 0.25, 0.0])

#: Buyer regions by exporter kind: formulation, api, chemical, merchant, specialist.
SEGMENTS: tuple[str, ...] = ("formulation", "api", "chemical", "merchant", "specialist")
SEGMENT_SHARE = np.array([0.30, 0.13, 0.17, 0.30, 0.10])
SEGMENT_REGIONS = np.array(
    [
        [0.25, 0.15, 0.12, 0.08, 0.07, 0.10, 0.18, 0.05],
        [0.30, 0.03, 0.04, 0.06, 0.08, 0.17, 0.30, 0.02],
        [0.10, 0.10, 0.10, 0.15, 0.15, 0.10, 0.25, 0.05],
        [0.08, 0.30, 0.15, 0.10, 0.12, 0.07, 0.13, 0.05],
        [0.20, 0.20, 0.12, 0.10, 0.10, 0.08, 0.15, 0.05],
    ]
)

#: Transshipment by mode (SEA, AIR) and destination region: probability and points.
TRANSSHIP: dict[str, dict[str, tuple[float, tuple[tuple[str, float], ...]]]] = {
    "SEA": {
        "regulated": (0.25, (("LK", .5), ("SG", .2), ("AE", .15), ("ES", .15))),
        "west_africa": (0.55, (("LK", .3), ("AE", .25), ("MA", .2), ("ES", .15), ("SG", .1))),
        "east_south_africa": (0.35, (("AE", .5), ("LK", .3), ("OM", .2))),
        "mena": (0.20, (("AE", .7), ("OM", .3))),
        "hub": (0.03, (("LK", 1.0),)),
        "latam": (0.70, (("SG", .35), ("LK", .25), ("ES", .2), ("PA", .2))),
        "asia": (0.25, (("SG", .6), ("LK", .2), ("MY", .2))),
    },
    "AIR": {
        "regulated": (0.15, (("AE", .5), ("QA", .5))),
        "west_africa": (0.45, (("AE", .45), ("QA", .25), ("ET", .3))),
        "east_south_africa": (0.35, (("AE", .5), ("QA", .2), ("ET", .3))),
        "mena": (0.10, (("AE", 1.0),)),
        "latam": (0.50, (("AE", .3), ("QA", .2), ("DE", .2), ("NL", .3))),
        "asia": (0.10, (("SG", .6), ("AE", .4))),
    },
}  # fmt: skip

MODES: tuple[str, ...] = ("SEA", "AIR", "COURIER", "POST", "ROAD", "RAIL")
SEA, AIR, COURIER, POST, ROAD, RAIL = range(6)
TERMS: tuple[str, ...] = ("LC", "ADVANCE", "OPEN_ACCOUNT", "CAD", "OTHER")
#: Payment terms by destination region (rows of REGION_NAMES order).
REGION_TERMS = np.array(
    [
        [0.10, 0.15, 0.50, 0.20, 0.05],
        [0.25, 0.40, 0.10, 0.20, 0.05],
        [0.25, 0.30, 0.20, 0.20, 0.05],
        [0.30, 0.30, 0.15, 0.20, 0.05],
        [0.15, 0.25, 0.40, 0.15, 0.05],
        [0.30, 0.25, 0.20, 0.20, 0.05],
        [0.25, 0.30, 0.25, 0.15, 0.05],
        [0.20, 0.45, 0.10, 0.20, 0.05],
    ]
)

#: Home port clusters: (code, share, sea ports, air ports).
CLUSTERS: tuple[tuple[str, float, tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]], ...] = (
    ("MUM", 0.32, (("INNSA", .85), ("INBOM", .15)), (("INBOM", 1.0),)),
    ("GUJ", 0.20, (("INMUN", .6), ("INPAV", .2), ("INHZA", .2)), (("INAMD", .7), ("INBOM", .3))),
    ("DEL", 0.15, (("INTKD", .5), ("INPPG", .2), ("INMUN", .3)), (("INDEL", 1.0),)),
    ("HYD", 0.15, (("INVTZ", .5), ("INMAA", .3), ("INNSA", .2)), (("INHYD", 1.0),)),
    ("SOU", 0.12, (("INMAA", .6), ("INTUT", .25), ("INCOK", .15)), (("INMAA", .5), ("INBLR", .5))),
    ("KOL", 0.06, (("INCCU", .7), ("INHAL", .3)), (("INCCU", 1.0),)),
)  # fmt: skip
LAND_PORTS: dict[str, str] = {"NP": "INRXL", "BD": "INPTL", "BT": "INJIG"}

#: Network focus groups: goods (product key, weight) and buyer regions (country, weight).
FOCUS: dict[str, tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...], str]] = {
    "tramadol": (
        (("tramadol_tab", .6), ("tapentadol_tab", .15), ("carisoprodol_tab", .10), ("tramadol_api", .15)),
        (("NG", .25), ("GH", .15), ("SL", .08), ("NE", .08), ("BJ", .08), ("TG", .08), ("CM", .08),
         ("LY", .10), ("EG", .05), ("AE", .05)),
        "merchant",
    ),
    "ephedrine": (
        (("ephedrine_api", .4), ("pseudoephedrine_api", .6)),
        (("MX", .40), ("GT", .20), ("HK", .08), ("AE", .07), ("MM", .25)),
        "api",
    ),
    "benzo": (
        (("alprazolam_tab", .5), ("diazepam_tab", .2), ("zolpidem_tab", .2), ("alprazolam_api", .1)),
        (("US", .25), ("AU", .15), ("GB", .10), ("AE", .15), ("HK", .10), ("PH", .10), ("RU", .15)),
        "merchant",
    ),
    "codeine": (
        (("codeine_syr", 1.0),),
        (("BD", .35), ("NG", .35), ("GH", .20), ("NP", .10)),
        "merchant",
    ),
    "anhydride": (
        (("acetic_anhydride", .6), ("permanganate", .4)),
        (("AE", .25), ("MM", .40), ("IQ", .35)),
        "chemical",
    ),
}  # fmt: skip
FOCUS_ORDER: tuple[str, ...] = ("tramadol", "ephedrine", "benzo", "codeine", "tramadol", "anhydride", "benzo")

MECHANISM_SHARES: dict[str, float] = {
    "network_merchant": 0.22,
    "licensed_drift": 0.18,
    "buyer_rotation": 0.13,
    "front_company": 0.12,
    "misdeclared_generic": 0.11,
    "volume_surge": 0.07,
    "undervalued": 0.06,
    "courier_parcels": 0.06,
    "lone_diverter": 0.05,
}
MECHANISMS: tuple[str, ...] = ("legitimate", *MECHANISM_SHARES)
MECH = {name: i for i, name in enumerate(MECHANISMS)}
#: Chance that a diverted declaration is ever seized, by mechanism.
SEIZE_PROBABILITY: dict[str, float] = {
    "network_merchant": 0.55,
    "licensed_drift": 0.40,
    "buyer_rotation": 0.45,
    "front_company": 0.50,
    "misdeclared_generic": 0.60,
    "volume_surge": 0.45,
    "undervalued": 0.40,
    "courier_parcels": 0.55,
    "lone_diverter": 0.35,
}
#: Chance that a seizure happens at the origin (Indian port), by mechanism.
ORIGIN_SHARE: dict[str, float] = {"misdeclared_generic": 0.5, "courier_parcels": 0.5}
#: Target share of diverted declarations before caught diverters react.
DIVERTED_TARGET = 0.024

FOREIGN_AGENCY: dict[str, str] = {
    "NG": "NDLEA", "GH": "NACOB", "US": "CBP", "AU": "ABF", "GB": "BORDER FORCE", "MX": "FGR",
    "AE": "DUBAI CUSTOMS", "BD": "DNC", "NP": "NARCOTICS CONTROL BUREAU NP", "LK": "SRI LANKA CUSTOMS",
}  # fmt: skip
ORIGIN_AGENCIES: tuple[str, ...] = ("NCB", "DRI", "CUSTOMS SIIB", "CUSTOMS AIR CARGO")


# --------------------------------------------------------------------------- small helpers


def _choice(rng: np.random.Generator, items: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    names = np.array([c for c, _ in items], dtype=object)
    weights = np.array([w for _, w in items], dtype=float)
    return names[rng.choice(len(names), size=n, p=weights / weights.sum())]


def _row_choice(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One category per row from a (rows, categories) matrix of probabilities."""
    cumulative = probabilities.cumsum(axis=1)
    u = rng.random(len(probabilities)) * cumulative[:, -1]
    return np.minimum((u[:, None] >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _country_index(codes: np.ndarray) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(COUNTRIES)}
    return np.array([lookup[c] for c in codes], dtype=np.int64)


class Calendar:
    """Filing-day intensity (season, weekdays, growth) and sampling of days from it."""

    def __init__(self, start: pd.Timestamp, n_days: int) -> None:
        dates = pd.date_range(start, periods=n_days, freq="D")
        month, day = dates.month.to_numpy(), dates.day.to_numpy()
        doy = dates.day_of_year.to_numpy()
        f = 1.0 + 0.10 * np.cos(2 * np.pi * (doy - 80) / 365.25)
        f *= np.where(month == 3, 1.25, 1.0)  # fiscal year-end push
        f *= np.where(((month == 10) & (day >= 20)) | ((month == 11) & (day <= 15)), 0.85, 1.0)  # Diwali
        f *= np.where(((month == 12) & (day >= 22)) | ((month == 1) & (day <= 3)), 0.80, 1.0)
        f *= np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.55, 0.08])[dates.day_of_week.to_numpy()]
        f *= 1.0 + 0.07 * np.arange(n_days) / 365.25
        self.start = start
        self.n_days = n_days
        self.cumulative = np.concatenate([[0.0], np.cumsum(f)])

    def mass(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Filing intensity between day a (inclusive) and b (exclusive)."""
        return self.cumulative[np.clip(b, 0, self.n_days)] - self.cumulative[np.clip(a, 0, self.n_days)]

    def sample(
        self, rng: np.random.Generator, a: np.ndarray, b: np.ndarray, power: float = 1.0
    ) -> np.ndarray:
        """Days in [a, b) drawn by intensity; power > 1 leans toward b (a ramp)."""
        a = np.clip(np.asarray(a, dtype=np.int64), 0, self.n_days - 1)
        b = np.clip(np.asarray(b, dtype=np.int64), a + 1, self.n_days)
        lo, hi = self.cumulative[a], self.cumulative[b]
        u = rng.random(np.broadcast(a, b).shape) ** (1.0 / power)
        days = np.searchsorted(self.cumulative, lo + u * (hi - lo), side="right") - 1
        return np.clip(days, a, b - 1)


class Consignees:
    """Foreign buyers: country and, for hub traders, the usual onward destination."""

    def __init__(self) -> None:
        self.country: list[np.ndarray] = []
        self.onward: list[np.ndarray] = []
        self.size = 0

    def add(self, rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
        country = np.asarray(country, dtype=np.int64)
        onward = country.copy()
        hub = COUNTRY_REGION[country] == _R["hub"]
        if hub.any():
            regions = rng.choice(len(REGION_NAMES), size=int(hub.sum()), p=HUB_ONWARD)
            onward[hub] = [_country_in_region(rng, r) for r in regions]
        self.country.append(country)
        self.onward.append(onward)
        ids = np.arange(self.size, self.size + len(country))
        self.size += len(country)
        return ids

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.country), np.concatenate(self.onward)


_REGION_COUNTRY_IDX = {
    _R[r]: (
        np.array([COUNTRIES.index(c) for c, _ in cs]),
        np.array([w for _, w in cs]) / sum(w for _, w in cs),
    )
    for r, cs in REGIONS.items()
}


def _country_in_region(rng: np.random.Generator, region: int) -> int:
    idx, p = _REGION_COUNTRY_IDX[int(region)]
    return int(idx[rng.choice(len(idx), p=p)])


def _countries_for_regions(rng: np.random.Generator, regions: np.ndarray) -> np.ndarray:
    out = np.empty(len(regions), dtype=np.int64)
    for r in np.unique(regions):
        mask = regions == r
        idx, p = _REGION_COUNTRY_IDX[int(r)]
        out[mask] = idx[rng.choice(len(idx), size=int(mask.sum()), p=p)]
    return out


# --------------------------------------------------------------------------- the rows


@dataclass
class Rows:
    """Declarations before their goods attributes are drawn (one entry per row)."""

    exporter: np.ndarray
    day: np.ndarray
    product: np.ndarray  # declared product
    true_product: np.ndarray  # what was really shipped (differs when misdeclared)
    consignee: np.ndarray
    mechanism: np.ndarray
    value_mult: np.ndarray
    qty_mult: np.ndarray
    vague: np.ndarray  # bool: vague description instead of the product's
    auth: np.ndarray  # 0 usual rule, 1 none, 2 always
    mode: np.ndarray  # -1: usual rule
    broker: np.ndarray  # -2: exporter's own choice, -1: none, else broker index
    term: np.ndarray  # -1: drawn by destination region

    @classmethod
    def make(
        cls,
        exporter: np.ndarray,
        day: np.ndarray,
        product: np.ndarray,
        consignee: np.ndarray,
        mechanism: str,
        **overrides: np.ndarray | float | int | bool,
    ) -> Rows:
        n = len(exporter)
        base = {
            "exporter": np.array(exporter, dtype=np.int64),
            "day": np.array(day, dtype=np.int64),
            "product": np.array(product, dtype=np.int64),
            "true_product": np.array(product, dtype=np.int64),
            "consignee": np.array(consignee, dtype=np.int64),
            "mechanism": np.full(n, MECH[mechanism], dtype=np.int64),
            "value_mult": np.ones(n),
            "qty_mult": np.ones(n),
            "vague": np.zeros(n, dtype=bool),
            "auth": np.zeros(n, dtype=np.int64),
            "mode": np.full(n, -1, dtype=np.int64),
            "broker": np.full(n, -2, dtype=np.int64),
            "term": np.full(n, -1, dtype=np.int64),
        }
        for name, value in overrides.items():
            base[name] = np.broadcast_to(np.asarray(value, dtype=base[name].dtype), (n,)).copy()
        return cls(**base)

    def __len__(self) -> int:
        return len(self.exporter)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Rows)})


@dataclass
class Exporters:
    """The exporter table; arrays indexed by exporter number."""

    segment: np.ndarray
    weight: np.ndarray
    entry: np.ndarray
    exit: np.ndarray
    cluster: np.ndarray
    sea_port: np.ndarray
    air_port: np.ndarray
    broker1: np.ndarray
    broker2: np.ndarray
    price: np.ndarray
    scale: np.ndarray
    air_tilt: np.ndarray
    products: np.ndarray  # (E, 6) product indices, -1 for empty slots
    product_weight: np.ndarray  # (E, 6)
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.segment)


@dataclass
class Network:
    focus: str
    cluster: int
    buyers: np.ndarray  # consignee indices
    start: np.ndarray
    end: np.ndarray
    brokers: np.ndarray


class World:
    """Everything drawn for one history; `build()` returns declarations, seizures and truth."""

    SLOTS = 6

    def __init__(self, rows: int, years: float, seed: int, start: str) -> None:
        if rows < 1000:
            raise ValueError("rows must be at least 1,000")
        if years <= 0.1:
            raise ValueError("years must be more than 0.1")
        self.rows = rows
        self.rng = np.random.default_rng(seed)
        self.calendar = Calendar(pd.Timestamp(start), max(60, int(round(years * 365.25))))
        self.n_days = self.calendar.n_days
        self.consignees = Consignees()
        self.port_names: list[str] = []
        self._port_lookup: dict[str, int] = {}
        self.broker_cluster: np.ndarray = np.zeros(0, dtype=np.int64)
        self.broker_ids: np.ndarray = np.zeros(0, dtype=object)

    # ------------------------------------------------------------------ entities

    def _port(self, name: str) -> int:
        if name not in self._port_lookup:
            self._port_lookup[name] = len(self.port_names)
            self.port_names.append(name)
        return self._port_lookup[name]

    def _make_brokers(self, n_exporters: int) -> None:
        rng = self.rng
        per_cluster = [max(4, int(n_exporters * share / 10)) for _, share, _, _ in CLUSTERS]
        self.broker_cluster = np.repeat(np.arange(len(CLUSTERS)), per_cluster)
        serial = np.concatenate([np.arange(1, k + 1) for k in per_cluster])
        self.broker_ids = np.array(
            [f"CHA-{CLUSTERS[c][0]}-{s:04d}" for c, s in zip(self.broker_cluster, serial, strict=True)],
            dtype=object,
        )
        # Broker popularity inside a cluster is heavy-tailed.
        self.broker_popularity = rng.pareto(1.2, len(self.broker_cluster)) + 0.2

    def _draw_brokers(self, cluster: np.ndarray) -> np.ndarray:
        rng = self.rng
        out = np.empty(len(cluster), dtype=np.int64)
        for c in range(len(CLUSTERS)):
            mask = cluster == c
            pool = np.flatnonzero(self.broker_cluster == c)
            p = self.broker_popularity[pool] / self.broker_popularity[pool].sum()
            out[mask] = pool[rng.choice(len(pool), size=int(mask.sum()), p=p)]
        return out

    def _exporter_ids(self, n: int) -> np.ndarray:
        """IEC-like ten-character identifiers (PAN pattern: 5 letters, 4 digits, 1 letter), unique."""
        rng = self.rng
        letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        out: list[str] = []
        seen: set[str] = set()
        while len(out) < n:
            k = n - len(out) + 16
            head = letters[rng.integers(0, 26, (k, 3))]
            kind = np.where(rng.random(k) < 0.8, "C", "F")  # company or firm
            initial = letters[rng.integers(0, 26, k)]
            digits = rng.integers(0, 10_000, k)
            check = letters[rng.integers(0, 26, k)]
            for i in range(k):
                code = f"{''.join(head[i])}{kind[i]}{initial[i]}{digits[i]:04d}{check[i]}"
                if code not in seen and len(out) < n:
                    seen.add(code)
                    out.append(code)
        return np.array(out, dtype=object)

    def _segment_products(self, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Product slots and weights per exporter from its kind."""
        rng = self.rng
        n = len(segment)
        products = np.full((n, self.SLOTS), -1, dtype=np.int64)
        weights = np.zeros((n, self.SLOTS))
        kinds = P_KIND
        formulations = np.flatnonzero(kinds == KINDS.index("formulation"))
        abused = np.flatnonzero(kinds == KINDS.index("abused"))
        cmed = np.flatnonzero(kinds == KINDS.index("cmed"))
        apis = np.flatnonzero(kinds == KINDS.index("api"))
        capis = np.flatnonzero(kinds == KINDS.index("capi"))
        chemicals = np.flatnonzero(kinds == KINDS.index("chemical"))
        precursors = np.flatnonzero(kinds == KINDS.index("precursor"))
        popularity = 1.0 / (1.0 + 0.15 * np.arange(len(PRODUCTS)))
        pools = {
            0: (np.concatenate([formulations, abused]), 0.25, cmed, 0.15),
            1: (apis, 0.20, capis, 0.30),
            2: (np.concatenate([chemicals, apis[:1], apis[2:3]]), 0.15, precursors, 0.30),
            3: (np.concatenate([formulations, abused, abused]), 0.10, cmed, 0.20),
        }
        for i in range(n):
            seg = int(segment[i])
            if seg == 4:  # licensed specialist
                controlled = np.concatenate([cmed, capis])
                k_c = int(rng.integers(1, 4))
                k_o = int(rng.integers(1, 4))
                chosen_c = rng.choice(controlled, size=k_c, replace=False)
                chosen_o = rng.choice(np.concatenate([formulations, apis]), size=k_o, replace=False)
                share_c = rng.uniform(0.5, 0.85)
                w_c = rng.dirichlet(np.full(k_c, 1.0)) * share_c
                w_o = rng.dirichlet(np.full(k_o, 1.0)) * (1 - share_c)
                items = np.concatenate([chosen_c, chosen_o])
                w = np.concatenate([w_c, w_o])
            else:
                pool, p_licensed, licensed_pool, licensed_share = pools[seg]
                unique_pool = np.unique(pool)
                base_p = np.bincount(pool, minlength=len(PRODUCTS))[unique_pool] * popularity[unique_pool]
                k = int(min(len(unique_pool), rng.integers(1, 6)))
                items = rng.choice(unique_pool, size=k, replace=False, p=base_p / base_p.sum())
                w = rng.dirichlet(np.full(k, 0.8))
                if rng.random() < p_licensed:
                    extra = int(rng.choice(licensed_pool))
                    items = np.append(items, extra)
                    w = np.append(w * (1 - licensed_share), licensed_share)
            products[i, : len(items)] = items
            weights[i, : len(items)] = w
        return products, weights

    def _make_exporters(self, n_regular: int, n_front: int, n_vendor: int) -> Exporters:
        rng = self.rng
        n = n_regular + n_front + n_vendor
        T = self.n_days
        segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
        segment[n_regular:] = 3
        weight = rng.lognormal(0.0, 1.5, n)
        entry = np.where(rng.random(n) < 0.8, 0, rng.uniform(0.02, 0.9, n) * T).astype(np.int64)
        leaves = rng.random(n) < 0.15
        exit_ = np.where(leaves, entry + 60 + rng.random(n) * np.maximum(T - entry - 60, 1), T).astype(
            np.int64
        )
        exit_ = np.clip(exit_, entry + 60, T)
        entry = np.minimum(entry, exit_ - 30)
        cluster = rng.choice(len(CLUSTERS), size=n, p=np.array([c[1] for c in CLUSTERS]))
        sea_port = np.empty(n, dtype=np.int64)
        air_port = np.empty(n, dtype=np.int64)
        for c, (_, _, sea, air) in enumerate(CLUSTERS):
            mask = cluster == c
            k = int(mask.sum())
            sea_port[mask] = [self._port(p) for p in _choice(rng, sea, k)]
            air_port[mask] = [self._port(p) for p in _choice(rng, air, k)]
        broker1 = self._draw_brokers(cluster)
        broker2 = np.where(rng.random(n) < 0.4, self._draw_brokers(cluster), -1)
        self_filing = rng.random(n) < 0.05
        broker1[self_filing] = -1
        broker2[self_filing] = -1
        products, product_weight = self._segment_products(segment)
        return Exporters(
            segment=segment,
            weight=weight,
            entry=entry,
            exit=exit_,
            cluster=cluster,
            sea_port=sea_port,
            air_port=air_port,
            broker1=broker1,
            broker2=broker2,
            price=rng.lognormal(0.0, 0.2, n),
            scale=rng.lognormal(0.0, 0.45, n) * weight**0.08,
            air_tilt=rng.normal(0.0, 0.8, n),
            products=products,
            product_weight=product_weight,
            ids=self._exporter_ids(n),
        )

    def _expected_rows(self, ex: Exporters, total: float) -> np.ndarray:
        mass = ex.weight * self.calendar.mass(ex.entry, ex.exit)
        return total * mass / mass.sum()

    def _make_relationships(self, ex: Exporters, expected: np.ndarray) -> None:
        """Buyer relationships per exporter, sorted by (exporter, start)."""
        rng = self.rng
        n_rel = np.minimum(1 + rng.poisson(0.9 * expected**0.55), 200)
        owner = np.repeat(np.arange(len(ex)), n_rel)
        offset = np.concatenate([[0], np.cumsum(n_rel)[:-1]])
        rank = np.arange(len(owner)) - offset[owner]
        early = rank < np.maximum(1, np.ceil(0.5 * n_rel[owner]))
        span = np.maximum(ex.exit[owner] - 30 - ex.entry[owner], 1)
        start = np.where(
            early, ex.entry[owner], ex.entry[owner] + (rng.random(len(owner)) * span).astype(np.int64)
        )
        # Shared distributors buy from many exporters; the rest are the exporter's own buyers.
        n_shared = max(50, len(ex) // 2)
        shared_regions = rng.choice(len(REGION_NAMES), size=n_shared, p=SEGMENT_REGIONS.mean(axis=0))
        shared = self.consignees.add(rng, _countries_for_regions(rng, shared_regions))
        popularity = (1.0 / np.arange(1, n_shared + 1)) ** 0.8
        is_shared = rng.random(len(owner)) < 0.3
        consignee = np.empty(len(owner), dtype=np.int64)
        consignee[is_shared] = shared[
            rng.choice(n_shared, size=int(is_shared.sum()), p=popularity / popularity.sum())
        ]
        own = ~is_shared
        regions = _row_choice(rng, SEGMENT_REGIONS[ex.segment[owner[own]]])
        consignee[own] = self.consignees.add(rng, _countries_for_regions(rng, regions))
        order = np.lexsort((start, owner))
        self.rel_owner = owner[order]
        self.rel_start = start[order]
        self.rel_consignee = consignee[order]
        self.rel_offset = offset
        self.rel_count = n_rel
        self.rel_term = np.full(len(owner), -1, dtype=np.int64)  # drawn once consignees are final

    def _relationship_terms(self) -> None:
        country, _ = self.consignees.arrays()
        region = COUNTRY_REGION[country[self.rel_consignee]]
        self.rel_term = _row_choice(self.rng, REGION_TERMS[region])

    def _make_networks(self, n_networks: int, ex: Exporters) -> list[Network]:
        rng = self.rng
        T = self.n_days
        networks = []
        for k in range(n_networks):
            focus = FOCUS_ORDER[k % len(FOCUS_ORDER)]
            _, buyer_countries, _ = FOCUS[focus]
            n_buyers = int(rng.integers(6, 13))
            country = _country_index(_choice(rng, buyer_countries, n_buyers))
            buyers = self.consignees.add(rng, country)
            step = T / (n_buyers - 2)
            start = ((np.arange(n_buyers) - 2) * step + rng.uniform(-0.3, 0.3, n_buyers) * step).astype(
                np.int64
            )
            length = (rng.uniform(2.5, 5.0, n_buyers) * step).astype(np.int64)
            start = np.maximum(start, -int(step))
            cluster = int(rng.choice(len(CLUSTERS), p=np.array([c[1] for c in CLUSTERS])))
            pool = np.flatnonzero(self.broker_cluster == cluster)
            brokers = rng.choice(pool, size=int(rng.integers(1, 3)), replace=False)
            networks.append(Network(focus, cluster, buyers, start, start + length, brokers))
        # Cover trade: some network buyers also buy ordinary goods from legitimate firms.
        for net in networks:
            for b, s, e in zip(net.buyers, net.start, net.end, strict=True):
                if rng.random() < 0.5:
                    candidates = np.flatnonzero(
                        (self.rel_start >= max(s, 0))
                        & (self.rel_start < e - 30)
                        & np.isin(ex.segment[self.rel_owner], (0, 3))
                        & (self.rel_start > ex.entry[self.rel_owner])
                    )
                    if len(candidates):
                        picked = rng.choice(candidates, size=min(len(candidates), int(rng.integers(1, 4))))
                        self.rel_consignee[picked] = b
        return networks

    # ------------------------------------------------------------------ choosing buyers

    def _network_buyers(
        self,
        net: Network,
        days: np.ndarray,
        favourite: np.ndarray | None = None,
        seasoned: bool = False,
        exclude: np.ndarray | None = None,
    ) -> np.ndarray:
        """One network buyer per row among those active on its day (nearest window if none)."""
        days = np.asarray(days)
        s, e = net.start[None, :], net.end[None, :]
        d = days[:, None]
        w = ((s <= d) & (d < e)).astype(float)
        if favourite is not None:
            w *= 1.0 + 4.0 * favourite
        if seasoned:
            w *= 1.0 + 3.0 * (d - s >= 60)
        banned = (net.buyers[None, :] == exclude[:, None]) if exclude is not None else np.zeros(w.shape, bool)
        w[banned] = 0.0
        none = w.sum(axis=1) == 0
        if none.any():  # nobody active that day: the buyer whose window is nearest
            distance = np.maximum(s - d[none], d[none] - e + 1).astype(float)
            w[none] = np.where(banned[none], 0.0, 1.0 / (1.0 + np.maximum(distance, 0.0)) ** 2)
        return net.buyers[_row_choice(self.rng, w)]

    # ------------------------------------------------------------------ diversion

    def _add_product(self, ex: Exporters, e: int, product: int, share: float) -> None:
        """Give exporter e the product at `share` of its trade (in its smallest slot)."""
        if (ex.products[e] == product).any():
            return
        slot = int(np.argmin(ex.product_weight[e]))
        ex.product_weight[e, slot] = 0.0
        ex.product_weight[e] *= (1 - share) / ex.product_weight[e].sum()
        ex.products[e, slot] = product
        ex.product_weight[e, slot] = share

    def _move_to_cluster(self, ex: Exporters, e: int, cluster: int) -> None:
        _, _, sea, air = CLUSTERS[cluster]
        ex.cluster[e] = cluster
        ex.sea_port[e] = self._port(str(_choice(self.rng, sea, 1)[0]))
        ex.air_port[e] = self._port(str(_choice(self.rng, air, 1)[0]))

    def _focus_products(self, focus: str, n: int) -> np.ndarray:
        goods, _, _ = FOCUS[focus]
        return np.array([PRODUCT_INDEX[k] for k in _choice(self.rng, goods, n)], dtype=np.int64)

    def _diversion(
        self,
        ex: Exporters,
        networks: list[Network],
        budgets: dict[str, int],
        expected: np.ndarray,
        n_regular: int,
    ) -> tuple[Rows, np.ndarray]:
        """All diverted rows, and the exporters that take part (for their reactions)."""
        rng = self.rng
        T = self.n_days
        parts: list[Rows] = []
        used = np.zeros(len(ex), dtype=bool)
        used[n_regular:] = True
        reacting = np.zeros(len(ex), dtype=bool)
        net_of_exporter = np.full(len(ex), -1, dtype=np.int64)
        generic_cover = np.array(
            [PRODUCT_INDEX[k] for k in ("diclofenac_tab", "paracetamol_tab", "metformin_tab")]
        )
        misdeclare_true = np.array(
            [PRODUCT_INDEX[k] for k in ("tramadol_tab", "tramadol_tab", "alprazolam_tab")]
        )

        def misdeclared(n: int) -> dict[str, np.ndarray]:
            vague = rng.random(n) < 0.5
            declared = generic_cover[rng.integers(0, len(generic_cover), n)]
            return {"product": declared, "true": misdeclare_true[rng.integers(0, 3, n)], "vague": vague}

        # --- network merchants (also carrying the undervalued and part of the misdeclared rows)
        want = budgets["network_merchant"] + budgets["undervalued"] + budgets["misdeclared_generic"] // 2
        candidates = np.flatnonzero(
            (~used) & (expected >= 25) & (expected <= 400) & (ex.exit - ex.entry > 0.4 * T)
        )
        candidates = rng.permutation(candidates)
        got = 0
        merchant_rows: list[Rows] = []
        for e in candidates:
            if got >= want:
                break
            k = int(rng.integers(0, len(networks)))
            net = networks[k]
            seg_wanted = SEGMENTS.index(FOCUS[net.focus][2])
            if ex.segment[e] != seg_wanted and not (seg_wanted == 3 and ex.segment[e] == 0):
                continue
            used[e] = True
            reacting[e] = True
            net_of_exporter[e] = k
            goods = self._focus_products(net.focus, 1)
            self._add_product(ex, e, int(goods[0]), 0.15)
            join = int(ex.entry[e] + rng.uniform(0.0, 0.6) * (ex.exit[e] - ex.entry[e]))
            n = int(np.clip(round(rng.uniform(0.3, 0.8) * expected[e]), 8, 150))
            days = self.calendar.sample(rng, np.full(n, join), np.full(n, ex.exit[e]))
            favourite = np.zeros((n, len(net.buyers)))
            favourite[:, rng.choice(len(net.buyers), size=min(3, len(net.buyers)), replace=False)] = 1.0
            buyers = self._network_buyers(net, days, favourite=favourite)
            complicit = ex.broker1[e] >= 0 and rng.random() < 0.7
            if complicit:
                ex.broker2[e] = int(rng.choice(net.brokers))
            broker = np.where(complicit & (rng.random(n) < 0.75), ex.broker2[e], -2)
            rows = Rows.make(
                np.full(n, e),
                days,
                self._focus_products(net.focus, n),
                buyers,
                "network_merchant",
                broker=broker,
            )
            merchant_rows.append(rows)
            got += n
        if merchant_rows:
            rows = Rows.concat(merchant_rows)
            # Only controlled tablets and syrups can pass as generic formulations.
            tablets = P_KIND[rows.product] == KINDS.index("cmed")
            share_under = budgets["undervalued"] / max(got, 1)
            share_mis = (budgets["misdeclared_generic"] // 2) / max(int(tablets.sum()), 1)
            u = rng.random(len(rows))
            under = u < share_under
            rows.mechanism[under] = MECH["undervalued"]
            rows.value_mult[under] = rng.uniform(0.45, 0.75, int(under.sum()))
            mis = ~under & tablets & (rng.random(len(rows)) < share_mis)
            spec = misdeclared(int(mis.sum()))
            rows.mechanism[mis] = MECH["misdeclared_generic"]
            rows.true_product[mis] = spec["true"]
            rows.product[mis] = spec["product"]
            rows.vague[mis] = spec["vague"]
            parts.append(rows)

        # --- licensed drift: established holders of the goods drift toward network buyers
        got = 0
        for e in rng.permutation(np.flatnonzero(~used & (ex.exit >= 0.8 * T) & (ex.entry <= 0.3 * T))):
            if got >= budgets["licensed_drift"]:
                break
            held = ex.products[e][(ex.products[e] >= 0) & P_CONTROLLED[np.maximum(ex.products[e], 0)]]
            matches = [
                (k, p)
                for k, net in enumerate(networks)
                for p in held
                if PRODUCTS[p].key in dict(FOCUS[net.focus][0])
            ]
            if not matches:
                continue
            k, p = matches[int(rng.integers(0, len(matches)))]
            slot_share = float(ex.product_weight[e][ex.products[e] == p].sum())
            drift = int(rng.uniform(0.3, 0.75) * T)
            n = int(
                np.clip(round(rng.uniform(0.3, 0.7) * expected[e] * slot_share * (T - drift) / T), 6, 120)
            )
            used[e] = True
            reacting[e] = True
            net_of_exporter[e] = k
            net = networks[k]
            days = self.calendar.sample(rng, np.full(n, drift), np.full(n, ex.exit[e]), power=2.0)
            buyers = self._network_buyers(net, days, seasoned=True)
            broker = np.full(n, int(rng.choice(net.brokers)) if rng.random() < 0.3 else -2)
            parts.append(
                Rows.make(np.full(n, e), days, np.full(n, p), buyers, "licensed_drift", broker=broker)
            )
            got += n

        # --- buyer rotation: a network buyer orders a few loads from one firm after another
        got = 0
        attempts = 0
        while got < budgets["buyer_rotation"] and attempts < 50 * max(budgets["buyer_rotation"], 1):
            attempts += 1
            k = int(rng.integers(0, len(networks)))
            net = networks[k]
            p = int(self._focus_products(net.focus, 1)[0])
            t0 = int(rng.integers(0, T - 20))
            holders = np.flatnonzero((ex.products == p).any(axis=1) & (ex.entry <= t0) & (ex.exit > t0 + 20))
            holders = holders[holders < n_regular]
            if not len(holders):
                continue
            e = int(rng.choice(holders))
            n = int(rng.integers(1, 4))
            days = self.calendar.sample(rng, np.full(n, t0), np.full(n, min(t0 + 60, ex.exit[e])))
            buyer = self._network_buyers(net, np.array([t0]))
            parts.append(
                Rows.make(np.full(n, e), days, np.full(n, p), np.full(n, buyer[0]), "buyer_rotation")
            )
            got += n

        # --- front companies (pre-made exporters n_regular .. n_regular + n_front)
        front = np.flatnonzero(ex.segment == -1)
        got = 0
        for e in front:
            k = int(rng.integers(0, len(networks)))
            net = networks[k]
            n = int(rng.integers(3, 13))
            days = self.calendar.sample(rng, np.full(n, ex.entry[e]), np.full(n, ex.exit[e]))
            buyers = self._network_buyers(net, days, seasoned=True)
            goods = self._focus_products(net.focus, n)
            rows = Rows.make(np.full(n, e), days, goods, buyers, "front_company")
            if rng.random() < 0.7:  # set up near the network, filing through its broker
                self._move_to_cluster(ex, e, net.cluster)
                ex.broker1[e] = int(rng.choice(net.brokers))
                ex.broker2[e] = -1
            mis = (rng.random(n) < 0.2) & (P_KIND[goods] == KINDS.index("cmed"))
            spec = misdeclared(int(mis.sum()))
            rows.true_product[mis] = spec["true"]
            rows.product[mis] = spec["product"]
            rows.vague[mis] = spec["vague"]
            parts.append(rows)
            got += n
        ex.segment[front] = 3

        # --- misdeclaration by merchants outside the networks, to one-off West African buyers
        got = 0
        want = budgets["misdeclared_generic"] - budgets["misdeclared_generic"] // 2
        for e in rng.permutation(np.flatnonzero(~used & (ex.segment == 3) & (expected >= 15))):
            if got >= want:
                break
            used[e] = True
            reacting[e] = True
            n = int(rng.integers(4, 16))
            days = self.calendar.sample(rng, np.full(n, ex.entry[e]), np.full(n, ex.exit[e]))
            n_buyers = max(1, n // 2)
            buyers = self.consignees.add(
                rng, _countries_for_regions(rng, np.full(n_buyers, _R["west_africa"]))
            )
            spec = misdeclared(n)
            rows = Rows.make(
                np.full(n, e),
                days,
                spec["product"],
                buyers[rng.integers(0, n_buyers, n)],
                "misdeclared_generic",
                vague=spec["vague"],
            )
            rows.true_product[:] = spec["true"]
            parts.append(rows)
            got += n

        # --- volume surges at licensed exporters
        got = 0
        for e in rng.permutation(np.flatnonzero(~used & (ex.exit - ex.entry > 150) & (expected >= 20))):
            if got >= budgets["volume_surge"]:
                break
            held = ex.products[e][(ex.products[e] >= 0) & P_CONTROLLED[np.maximum(ex.products[e], 0)]]
            if not len(held):
                continue
            p = int(rng.choice(held))
            used[e] = True
            reacting[e] = True
            length = int(rng.integers(60, 125))
            s = int(rng.integers(ex.entry[e], max(ex.entry[e] + 1, ex.exit[e] - length)))
            n = int(rng.integers(5, 21))
            days = self.calendar.sample(rng, np.full(n, s), np.full(n, s + length))
            if rng.random() < 0.5:
                k = int(rng.integers(0, len(networks)))
                net_of_exporter[e] = k
                buyers = self._network_buyers(networks[k], days)
            else:
                lo, hi = self.rel_offset[e], self.rel_offset[e] + self.rel_count[e]
                known = self.rel_consignee[lo:hi][self.rel_start[lo:hi] <= s]
                buyers = np.full(n, int(rng.choice(known)) if len(known) else int(self.rel_consignee[lo]))
            parts.append(
                Rows.make(
                    np.full(n, e),
                    days,
                    np.full(n, p),
                    buyers,
                    "volume_surge",
                    qty_mult=rng.uniform(2.5, 5.0, n),
                )
            )
            got += n

        # --- courier parcels from online vendors (pre-made exporters with segment -2)
        vendors = np.flatnonzero(ex.segment == -2)
        parcel_goods = np.array(
            [PRODUCT_INDEX[k] for k in ("alprazolam_tab", "tramadol_tab", "zolpidem_tab", "tapentadol_tab")]
        )
        benzo = [k for k, net in enumerate(networks) if net.focus == "benzo"]
        for e in vendors:
            n = int(rng.integers(20, 61))
            days = self.calendar.sample(rng, np.full(n, ex.entry[e]), np.full(n, ex.exit[e]))
            true = parcel_goods[rng.choice(len(parcel_goods), size=n, p=[0.4, 0.3, 0.15, 0.15])]
            private = self.consignees.add(
                rng, _country_index(_choice(rng, (("US", 0.6), ("AU", 0.3), ("GB", 0.1)), n))
            )
            if benzo:
                reshipper = self._network_buyers(networks[benzo[int(rng.integers(0, len(benzo)))]], days)
                buyers = np.where(rng.random(n) < 0.4, reshipper, private)
            else:
                buyers = private
            mis = rng.random(n) < 0.7
            spec = misdeclared(n)
            declared = np.where(mis, spec["product"], true)
            mode = np.where(rng.random(n) < 0.8, COURIER, POST)
            rows = Rows.make(
                np.full(n, e), days, declared, buyers, "courier_parcels", mode=mode, vague=mis & spec["vague"]
            )
            rows.true_product[:] = true
            parts.append(rows)
        ex.segment[vendors] = 3

        # --- lone diverters: one private buyer, no network
        got = 0
        lone_goods = np.array(
            [PRODUCT_INDEX[k] for k in ("tramadol_tab", "tapentadol_tab", "codeine_syr", "carisoprodol_tab")]
        )
        for e in rng.permutation(np.flatnonzero(~used & np.isin(ex.segment, (0, 3, 4)) & (expected >= 15))):
            if got >= budgets["lone_diverter"]:
                break
            used[e] = True
            reacting[e] = True
            p = int(rng.choice(lone_goods))
            self._add_product(ex, e, p, 0.1)
            n = int(rng.integers(6, 31))
            a = int(ex.entry[e] + rng.uniform(0, 0.5) * (ex.exit[e] - ex.entry[e]))
            days = self.calendar.sample(rng, np.full(n, a), np.full(n, ex.exit[e]))
            region = rng.choice([_R["west_africa"], _R["mena"], _R["hub"]], p=[0.6, 0.2, 0.2])
            buyer = self.consignees.add(rng, _countries_for_regions(rng, np.array([region])))
            parts.append(Rows.make(np.full(n, e), days, np.full(n, p), np.full(n, buyer[0]), "lone_diverter"))
            got += n

        self.net_of_exporter = net_of_exporter
        self.networks = networks
        return Rows.concat(parts), reacting

    # ------------------------------------------------------------------ seizure draws

    def _seizure_draws(self, mechanism: np.ndarray, probability: np.ndarray) -> dict[str, np.ndarray]:
        """Whether each row is seized, where (0 origin, 1 transit, 2 destination), the lag in
        days and what the seizure names (0 all, 1 declaration+exporter, 2 declaration,
        3 consignee only, 4 exporter only)."""
        rng = self.rng
        n = len(mechanism)
        seized = rng.random(n) < probability
        origin_share = np.array([ORIGIN_SHARE.get(m, 0.2) for m in MECHANISMS])[mechanism]
        u = rng.random(n)
        place = np.where(u < origin_share, 0, np.where(u < origin_share + 0.15, 1, 2))
        late = rng.random(n)
        lag = np.select(
            [place == 0, place == 1],
            [
                np.where(late < 0.3, rng.lognormal(np.log(120), 0.6, n), rng.uniform(0, 7, n)),
                rng.uniform(8, 45, n),
            ],
            np.where(late < 0.35, rng.lognormal(np.log(160), 0.5, n), rng.uniform(15, 90, n)),
        ).astype(np.int64)
        link = rng.choice(5, size=n, p=[0.78, 0.08, 0.04, 0.06, 0.04])
        return {"seized": seized, "place": place, "lag": lag, "link": link}

    def _react(
        self, rows: Rows, draws: dict[str, np.ndarray], reacting: np.ndarray, ex: Exporters
    ) -> np.ndarray:
        """Caught diverters react after the first seizure that names them; returns kept rows."""
        rng = self.rng
        keep = np.ones(len(rows), dtype=bool)
        names_exporter = draws["seized"] & (draws["link"] != 3)
        known = rows.day + draws["lag"]
        frame = pd.DataFrame({"e": rows.exporter[names_exporter], "t": known[names_exporter]})
        first = frame.groupby("e", sort=True)["t"].min()
        first = first[reacting[first.index.to_numpy()]]
        for e, t in zip(first.index.to_numpy(), first.to_numpy(), strict=True):
            mine = np.flatnonzero((rows.exporter == e) & (rows.day > t))
            u = rng.random()
            if u < 0.30:  # stop diverting; half close down
                keep[mine] = False
                if rng.random() < 0.5:
                    ex.exit[e] = max(ex.entry[e] + 30, min(ex.exit[e], t + int(rng.integers(10, 90))))
            elif u < 0.55:  # pause for a few months
                keep[mine[rows.day[mine] <= t + int(rng.integers(90, 241))]] = False
            elif u < 0.80:  # move away from the buyer named in the seizure
                k = self.net_of_exporter[e]
                burned = rows.consignee[names_exporter & (rows.exporter == e) & (known == t)][:1]
                move = mine[rows.consignee[mine] == burned[0]] if len(burned) else mine[:0]
                if len(move) and k >= 0:
                    net = self.networks[k]
                    rows.consignee[move] = self._network_buyers(
                        net, rows.day[move], exclude=rows.consignee[move]
                    )
                elif len(move):
                    country, _ = self.consignees.arrays()
                    fresh = self.consignees.add(rng, country[rows.consignee[move[:1]]])
                    rows.consignee[move] = fresh[0]
        return keep

    # ------------------------------------------------------------------ legitimate rows

    def _legitimate(self, ex: Exporters, n: int) -> Rows:
        rng = self.rng
        mass = ex.weight * self.calendar.mass(ex.entry, ex.exit)
        counts = rng.multinomial(n, mass / mass.sum())
        exporter = np.repeat(np.arange(len(ex)), counts)
        day = self.calendar.sample(rng, ex.entry[exporter], ex.exit[exporter])
        cumulative = ex.product_weight.cumsum(axis=1)
        cumulative /= cumulative[:, -1:]
        slot = (rng.random(n)[:, None] > cumulative[exporter]).sum(axis=1)
        product = ex.products[exporter, np.minimum(slot, self.SLOTS - 1)]
        # Buyers: among relationships started by that day, older ones ordered more often.
        big = self.n_days + 10
        keys = self.rel_owner * big + self.rel_start
        active = np.searchsorted(keys, exporter * big + day, side="right") - self.rel_offset[exporter]
        active = np.clip(active, 1, self.rel_count[exporter])
        rel = self.rel_offset[exporter] + (active * rng.random(n) ** 1.8).astype(np.int64)
        vague_rate = np.where(ex.segment[exporter] == 3, 0.15, 0.03)
        vague = (rng.random(n) < vague_rate) & (P_KIND[product] == KINDS.index("formulation"))
        term = np.where(rng.random(n) < 0.85, self.rel_term[rel], -1)
        return Rows.make(
            exporter, day, product, self.rel_consignee[rel], "legitimate", vague=vague, term=term
        )

    # ------------------------------------------------------------------ goods attributes

    def _attributes(self, rows: Rows, ex: Exporters) -> dict[str, np.ndarray]:
        """Everything on a declaration that follows from who ships what to whom.

        Legitimate and diverted rows go through the same code: that is the imitation.
        """
        rng = self.rng
        n = len(rows)
        e, p = rows.exporter, rows.product
        country, onward = self.consignees.arrays()
        c_country = country[rows.consignee]
        hub = COUNTRY_REGION[c_country] == _R["hub"]
        destination = np.where(hub & (rng.random(n) < 0.55), onward[rows.consignee], c_country)
        region = COUNTRY_REGION[destination]
        kind = P_KIND[p]

        # Transport mode.
        logit = np.log(KIND_AIR[kind] / (1 - KIND_AIR[kind])) + ex.air_tilt[e]
        p_air = 1 / (1 + np.exp(-logit))
        u = rng.random(n)
        mode = np.where(
            u < 0.02, COURIER, np.where(u < 0.024, POST, np.where(u < 0.024 + p_air * 0.976, AIR, SEA))
        )
        neighbour = region == _R["neighbour"]
        bt = destination == COUNTRIES.index("BT")
        v = rng.random(n)
        land = np.where(v < 0.6, ROAD, np.where(v < 0.7, RAIL, np.where(v < 0.85, AIR, SEA)))
        land = np.where(bt & (land == RAIL), ROAD, land)
        land = np.where(bt & (land == SEA), ROAD, land)
        mode = np.where(neighbour, land, mode)
        mode = np.where(rows.mode >= 0, rows.mode, mode)

        # Weights, value, quantity.
        gross = P_SEA_KG[p] * ex.scale[e] * rng.lognormal(0.0, 0.7, n)
        gross = np.select(
            [mode == AIR, mode == ROAD, mode == COURIER, mode == POST],
            [
                np.minimum(gross * 0.1, 3000.0),
                gross * 0.5,
                np.minimum(rng.lognormal(np.log(12.0), 0.8, n), 70.0),
                np.minimum(rng.lognormal(np.log(1.5), 0.7, n), 20.0),
            ],
            gross,
        )
        gross = np.maximum(gross * rows.qty_mult, 0.3)
        net = gross * rng.uniform(0.78, 0.94, n)
        value = net * P_USD[p] * ex.price[e] * rng.lognormal(0.0, 0.25, n) * rows.value_mult
        unit = P_UNIT[p]
        quantity = np.select(
            [unit == "NOS", unit == "LTR"],
            [np.maximum(np.round(net / PACK_KG), 1.0), np.maximum(np.round(net * LITRES_PER_KG, 1), 0.1)],
            np.maximum(np.round(net, 1), 0.1),
        )

        # Ports.
        port_names = np.array(self.port_names + [LAND_PORTS[c] for c in ("NP", "BD", "BT")], dtype=object)
        land_port = len(self.port_names) + np.select(
            [destination == COUNTRIES.index("NP"), destination == COUNTRIES.index("BD")], [0, 1], 2
        )
        usual = rng.random(n) < 0.85
        cluster = ex.cluster[e]
        other_sea = np.empty(n, dtype=np.int64)
        other_air = np.empty(n, dtype=np.int64)
        for c, (_, _, sea, air) in enumerate(CLUSTERS):
            mask = cluster == c
            k = int(mask.sum())
            other_sea[mask] = [self._port(x) for x in _choice(rng, sea, k)]
            other_air[mask] = [self._port(x) for x in _choice(rng, air, k)]
        port = np.select(
            [np.isin(mode, (ROAD, RAIL)), mode == SEA],
            [land_port, np.where(usual, ex.sea_port[e], other_sea)],
            np.where(usual, ex.air_port[e], other_air),
        )

        # Transshipment.
        transship = np.full(n, "", dtype=object)
        dest_codes = np.array(COUNTRIES, dtype=object)[destination]
        for mode_name, table in TRANSSHIP.items():
            m = MODES.index(mode_name)
            for region_name, (prob, points) in table.items():
                mask = (mode == m) & (region == _R[region_name]) & (rng.random(n) < prob)
                k = int(mask.sum())
                if k:
                    transship[mask] = _choice(rng, points, k)
        transship[transship == dest_codes] = ""

        # Payment terms: the relationship's usual terms, else by destination region; diverted
        # rows lean a little more to advance payment.
        drawn = _row_choice(rng, REGION_TERMS[region])
        diverted = rows.mechanism != MECH["legitimate"]
        drawn = np.where(diverted & (rng.random(n) < 0.08), TERMS.index("ADVANCE"), drawn)
        term = np.where(rows.term >= 0, rows.term, drawn)

        # Broker.
        second = (ex.broker2[e] >= 0) & (rng.random(n) < 0.3)
        own = np.where(second, ex.broker2[e], ex.broker1[e])
        broker = np.where(rows.broker == -2, own, rows.broker)
        broker_ids = np.append(self.broker_ids, "")
        broker_text = broker_ids[np.where(broker >= 0, broker, len(self.broker_ids))]

        # Description.
        variants = np.array([list(prod.descriptions) for prod in PRODUCTS], dtype=object)
        description = variants[p, rng.integers(0, 3, n)]
        vague_text = np.array(VAGUE_DESCRIPTIONS, dtype=object)[rng.integers(0, len(VAGUE_DESCRIPTIONS), n)]
        description = np.where(rows.vague, vague_text, description)
        description = np.where(rng.random(n) < 0.005, "", description)

        # Authorisation presence (the reference number is given after sorting).
        controlled = P_CONTROLLED[p]
        base_rate = np.where(diverted, 0.96, 0.97)
        has_auth = np.select(
            [rows.auth == 1, rows.auth == 2], [False, True], controlled & (rng.random(n) < base_rate)
        )

        return {
            "destination": destination,
            "consignee_country": c_country,
            "mode": mode,
            "gross": np.round(gross, 2),
            "net": net,
            "value": np.round(value, 2),
            "quantity": quantity,
            "port": port_names[port],
            "transship": transship,
            "term": term,
            "broker": broker_text,
            "description": description,
            "has_auth": has_auth,
        }

    # ------------------------------------------------------------------ assembling

    def build(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        rng = self.rng
        T = self.n_days
        target = int(round(self.rows * DIVERTED_TARGET))
        budgets = {m: max(1, int(round(s * target))) for m, s in MECHANISM_SHARES.items()}
        n_regular = int(np.clip(self.rows // 90, 150, 6000))
        n_front = max(2, math.ceil(budgets["front_company"] / 7.5))
        n_vendor = max(1, math.ceil(budgets["courier_parcels"] / 40))
        self._make_brokers(n_regular)
        ex = self._make_exporters(n_regular, n_front, n_vendor)
        # Front companies live for weeks; online vendors for months; both start out small.
        fronts = np.arange(n_regular, n_regular + n_front)
        vendors = np.arange(n_regular + n_front, len(ex))
        ex.entry[fronts] = (rng.uniform(0.08, 0.95, n_front) * T).astype(np.int64)
        ex.exit[fronts] = np.minimum(ex.entry[fronts] + rng.integers(20, 121, n_front), T)
        ex.entry[vendors] = (rng.uniform(0.05, 0.8, n_vendor) * T).astype(np.int64)
        ex.exit[vendors] = np.minimum(ex.entry[vendors] + rng.integers(90, 300, n_vendor), T)
        ex.segment[fronts] = -1
        ex.segment[vendors] = -2
        legit_total = self.rows - target
        expected = self._expected_rows(ex, legit_total)
        ex.weight[fronts] *= np.where(rng.random(n_front) < 0.5, 1.5, 0.0) / np.maximum(
            expected[fronts], 1e-9
        )
        ex.weight[vendors] *= 10.0 / np.maximum(expected[vendors], 1e-9)
        expected = self._expected_rows(ex, legit_total)
        self._make_relationships(ex, expected)
        n_networks = int(np.clip(round(self.rows / 50_000), 3, 16))
        networks = self._make_networks(n_networks, ex)
        self._relationship_terms()

        diverted, reacting = self._diversion(ex, networks, budgets, expected, n_regular)
        probability = np.array([0.0] + list(SEIZE_PROBABILITY.values()))[diverted.mechanism]
        draws = self._seizure_draws(diverted.mechanism, probability)
        keep = self._react(diverted, draws, reacting, ex)
        keep &= diverted.day < T
        diverted = diverted.take(keep)
        draws = {k: v[keep] for k, v in draws.items()}
        n_legit = self.rows - len(diverted)
        legit = self._legitimate(ex, n_legit)

        rows = Rows.concat([legit, diverted])
        attrs = self._attributes(rows, ex)
        # Legitimate seizures (label noise): controlled goods filed without authorisation
        # are sometimes stopped; a very few other shipments are seized over paperwork.
        controlled = P_CONTROLLED[rows.product]
        noise_p = np.where(controlled & ~attrs["has_auth"], 0.10, np.where(controlled, 0.002, 0.0002))
        legit_draws = self._seizure_draws(rows.mechanism[: len(legit)], noise_p[: len(legit)])
        legit_draws["place"] = np.where(rng.random(len(legit)) < 0.7, 0, legit_draws["place"])
        legit_draws["link"] = np.where(rng.random(len(legit)) < 0.85, 0, 2)
        draws = {k: np.concatenate([legit_draws[k], draws[k]]) for k in draws}

        # Sort by filing time and number everything.
        seconds = np.clip(rng.normal(15 * 3600, 3 * 3600, len(rows)), 7 * 3600, 23.5 * 3600).astype(np.int64)
        stamp = rows.day * 86_400 + seconds
        order = np.lexsort((rng.random(len(rows)), stamp))
        rows = rows.take(order)
        attrs = {k: v[order] for k, v in attrs.items()}
        draws = {k: v[order] for k, v in draws.items()}
        stamp = stamp[order]
        declared_at = self.calendar.start + pd.to_timedelta(stamp, unit="s")
        serial = pd.Series(np.arange(1, len(rows) + 1)).astype("str").str.zfill(8)
        declaration_id = (pd.Series(attrs["port"]).astype("str") + serial).to_numpy(dtype=object)
        years = declared_at.year.to_numpy()
        auth_ids = np.full(len(rows), "", dtype=object)
        has = np.flatnonzero(attrs["has_auth"])
        kind = np.where(P_NOC[rows.product[has]], "NOC", "EA")
        auth_ids[has] = [
            f"NC/{k}/{y}/{i:06d}"
            for k, y, i in zip(kind, years[has], rng.permutation(len(has)) + 1, strict=True)
        ]
        country_codes = np.array(COUNTRIES, dtype=object)
        c_ids = self._consignee_ids()

        declarations = pd.DataFrame(
            {
                "declaration_id": declaration_id,
                "declared_at": declared_at.as_unit("us"),
                "exporter_id": ex.ids[rows.exporter],
                "consignee_id": c_ids[rows.consignee],
                "consignee_country": country_codes[attrs["consignee_country"]],
                "destination_country": country_codes[attrs["destination"]],
                "port_of_loading": attrs["port"],
                "transport_mode": np.array(MODES, dtype=object)[attrs["mode"]],
                "hs_code": P_HS[rows.product],
                "goods_description": attrs["description"],
                "quantity": attrs["quantity"],
                "quantity_unit": P_UNIT[rows.product],
                "gross_weight_kg": attrs["gross"],
                "declared_value_usd": attrs["value"],
                "customs_broker_id": attrs["broker"],
                "payment_terms": np.array(TERMS, dtype=object)[attrs["term"]],
                "export_authorization_id": auth_ids,
                "transshipment_country": attrs["transship"],
            }
        )
        truth = pd.DataFrame(
            {
                "declaration_id": declaration_id,
                "diverted": rows.mechanism != MECH["legitimate"],
                "mechanism": np.array(MECHANISMS, dtype=object)[rows.mechanism],
            }
        )
        seizures = self._seizures(rows, attrs, draws, declaration_id, ex, c_ids)
        return declarations, seizures, truth

    def _consignee_ids(self) -> np.ndarray:
        country, _ = self.consignees.arrays()
        codes = np.array(COUNTRIES, dtype=object)[country]
        serial = self.rng.permutation(len(country)) + 1
        return (
            pd.Series(codes).astype("str") + "-B" + pd.Series(serial).astype("str").str.zfill(6)
        ).to_numpy(dtype=object)

    def _seizures(
        self,
        rows: Rows,
        attrs: dict[str, np.ndarray],
        draws: dict[str, np.ndarray],
        declaration_id: np.ndarray,
        ex: Exporters,
        c_ids: np.ndarray,
    ) -> pd.DataFrame:
        rng = self.rng
        T = self.n_days
        idx = np.flatnonzero(draws["seized"])
        day = rows.day[idx] + draws["lag"][idx]
        place = draws["place"][idx]
        transship = attrs["transship"][idx]
        place = np.where((place == 1) & (transship == ""), 2, place)
        country_codes = np.array(COUNTRIES, dtype=object)
        destination = country_codes[attrs["destination"][idx]]
        country = np.select(
            [place == 0, place == 1], [np.full(len(idx), "IN", dtype=object), transship], destination
        )
        link = draws["link"][idx]
        n = len(idx)
        origin_agency = np.array(ORIGIN_AGENCIES, dtype=object)[rng.integers(0, len(ORIGIN_AGENCIES), n)]
        foreign = np.array([FOREIGN_AGENCY.get(c, f"{c} CUSTOMS") for c in country], dtype=object)
        quantity = np.round(attrs["net"][idx] * rng.uniform(0.4, 1.0, n), 2)
        quantity = np.where(rng.random(n) < 0.1, np.nan, quantity)
        linked = pd.DataFrame(
            {
                "day": day,
                "declaration_id": np.where(link <= 2, declaration_id[idx], ""),
                "exporter_id": np.where(np.isin(link, (0, 1, 4)), ex.ids[rows.exporter[idx]], ""),
                "consignee_id": np.where(np.isin(link, (0, 3)), c_ids[rows.consignee[idx]], ""),
                "country": country,
                "substance": P_SUBSTANCE[rows.true_product[idx]],
                "quantity_kg": quantity,
                "agency": np.where(country == "IN", origin_agency, foreign),
            }
        )
        # Intelligence: reports naming network buyers or network exporters, and a few innocents.
        consignee_country = np.array(COUNTRIES, dtype=object)[self.consignees.arrays()[0]]
        intel: list[dict[str, object]] = []
        for net in self.networks:
            goods, _, _ = FOCUS[net.focus]
            substance = PRODUCTS[PRODUCT_INDEX[goods[0][0]]].substance
            agency = "INCB-PICS" if net.focus in ("ephedrine", "anhydride") else "INCB-IONICS"
            for b, s, e in zip(net.buyers, net.start, net.end, strict=True):
                for _ in range(int(rng.poisson(0.6))):
                    d = int(rng.integers(max(s + 60, 0), max(e + 200, s + 61)))
                    intel.append(
                        {
                            "day": d,
                            "consignee_id": c_ids[b],
                            "substance": substance,
                            "agency": agency,
                            "country": consignee_country[b],
                        }
                    )
        members = np.flatnonzero(self.net_of_exporter >= 0)
        for e in members[rng.random(len(members)) < 0.2]:
            net = self.networks[self.net_of_exporter[e]]
            substance = PRODUCTS[PRODUCT_INDEX[FOCUS[net.focus][0][0][0]]].substance
            d = int(rng.integers(ex.entry[e], T + 200))
            intel.append(
                {"day": d, "exporter_id": ex.ids[e], "substance": substance, "agency": "NCB", "country": "IN"}
            )
        n_innocent = max(1, len(intel) // 10)
        for _ in range(n_innocent):
            d = int(rng.integers(0, T))
            if rng.random() < 0.5:
                e = int(rng.integers(0, len(ex)))
                intel.append(
                    {
                        "day": d,
                        "exporter_id": ex.ids[e],
                        "substance": "tramadol",
                        "agency": "NCB",
                        "country": "IN",
                    }
                )
            else:
                b = int(rng.integers(0, len(c_ids)))
                intel.append(
                    {
                        "day": d,
                        "consignee_id": c_ids[b],
                        "substance": "tramadol",
                        "agency": "INCB-IONICS",
                        "country": consignee_country[b],
                    }
                )
        intel_frame = pd.DataFrame(
            intel,
            columns=[
                "day",
                "declaration_id",
                "exporter_id",
                "consignee_id",
                "country",
                "substance",
                "quantity_kg",
                "agency",
            ],
        )
        for column in ("declaration_id", "exporter_id", "consignee_id"):
            intel_frame[column] = intel_frame[column].astype(object).where(intel_frame[column].notna(), "")
        intel_frame["quantity_kg"] = intel_frame["quantity_kg"].astype(float)
        frame = pd.concat([linked, intel_frame], ignore_index=True)
        frame["day"] = frame["day"].astype(np.int64)
        frame = frame[(frame["day"] >= 0) & (frame["day"] < T)]
        frame = frame.iloc[np.lexsort((np.arange(len(frame)), frame["day"].to_numpy()))].reset_index(
            drop=True
        )
        seized_at = self.calendar.start + pd.to_timedelta(frame["day"].to_numpy(), unit="D")
        frame.insert(0, "seized_at", seized_at.as_unit("us"))
        frame.insert(0, "seizure_id", [f"SZ{i:07d}" for i in range(1, len(frame) + 1)])
        return frame.drop(columns="day")


# --------------------------------------------------------------------------- writing


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(path, index=False, engine="pyarrow", compression="snappy")
        return
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S")
    out.to_csv(path, index=False, lineterminator="\n")


def generate_independent_history(
    rows: int, years: float = 3.0, seed: int = 1, start: str = "2022-01-01"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The declarations, seizures and ground truth as frames (see the module docstring)."""
    return World(rows, years, seed, start).build()


def write_independent_history(
    out_dir: Path,
    rows: int,
    years: float = 3.0,
    seed: int = 1,
    fmt: str = "parquet",
    start: str = "2022-01-01",
) -> None:
    """Write declarations.<fmt>, seizures.<fmt> and ground_truth.<fmt> into out_dir."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    declarations, seizures, truth = generate_independent_history(rows, years, seed, start)
    _write(declarations, out_dir / f"declarations.{fmt}", fmt)
    _write(seizures, out_dir / f"seizures.{fmt}", fmt)
    _write(truth, out_dir / f"ground_truth.{fmt}", fmt)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--rows", type=int, default=300_000, help="number of declarations")
    parser.add_argument("--years", type=float, default=3.0, help="length of the history in years")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2022-01-01", help="first filing day (ISO date)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    declarations, seizures, truth = generate_independent_history(args.rows, args.years, args.seed, args.start)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("declarations", declarations), ("seizures", seizures), ("ground_truth", truth)):
        _write(frame, args.out / f"{name}.{args.format}", args.format)
    linked = (seizures["declaration_id"] != "").mean() if len(seizures) else 0.0
    print(
        f"{len(declarations):,} declarations, {truth['diverted'].mean():.2%} diverted, "
        f"{len(seizures):,} seizures, {linked:.1%} linked to a declaration, "
        f"written to {args.out} in {time.perf_counter() - began:.1f} s"
    )


if __name__ == "__main__":
    main()
