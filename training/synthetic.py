"""Synthetic export history in the input contract: declarations, seizures and ground truth.

The generator imitates Indian pharmaceutical exports (see `/work/shared/domain-facts.md`
and `docs/synthetic-data.md`). Legitimate trade dominates and is varied; a small share of
declarations (about 2.5 %) is diverted by one of the typologies below. The generator is
built so that red flags overlap: legitimate trade shows them often and in combinations
(licensed tramadol and codeine exporters shipping container loads to West Africa under
authorisation, sometimes via Lome and paid in advance; herbal exporters sending parcels to
individuals in the US, GB and AU; large manufacturers transshipping via their hub and
selling through hub distributors; one-off buyers paying in advance; start-ups, a few of
them licensed; tender lots at low prices; clerical omissions of the authorisation number;
compliance findings against busy exporters). Diverted declarations show fewer, weaker
signals whose meaning depends on the context: who ships (front companies, online vendors,
established exporters during a diversion episode, licensed ones diverting their own
line), to whom (a new buyer, a buyer shared by a ring of diverters, a shell), and the
exporter's own history (lot size, routes, earlier seizures).

Typologies (target share of all declarations; the field where each shows):

====================== ====== ==========================================================
typology               rate   shows in
====================== ====== ==========================================================
front_company          0.25 % new `exporter_id`, short-lived, controlled goods, ring buyers
no_authorisation       0.18 % controlled `hs_code`/description, empty `export_authorization_id`
misdeclared_cover      0.45 % generic `hs_code`/cover `goods_description`; 15 % leak the substance
undervaluation         0.15 % `declared_value_usd` 10-40 % of the norm (40 %: over-invoiced 2.5-5x)
quantity_spike         0.15 % `quantity` 4-15x the exporter's usual lot
courier_dropship       0.35 % `transport_mode` COURIER/POST, parcels to US/AU/GB/CA individuals
hub_transshipment      0.35 % `transshipment_country` a hub, with a buyer never seen before
consignee_mismatch     0.20 % `consignee_country` (a hub) differs from `destination_country`
shell_consignee        0.20 % `consignee_id` from a small pool shared by diverting exporters
complicit_broker       0.10 % `customs_broker_id` one of three brokers (who also serve legitimate trade)
west_africa_tramadol   0.25 % `destination_country` NG/GH/SL/NE/BJ/TG/..., tramadol 225 mg tablets,
                              unauthorised (40 %), under a cover (30 %) or with a new buyer
advance_payment        0.05 % `payment_terms` ADVANCE
new_route_drift        0.50 % only with ``drift=True``, second half of the period: pregabalin /
                              nitazene-like goods (3004.90, 2933.99) to LY/SD/YE via TR
====================== ====== ==========================================================

Diverters have a history: established exporters divert during one episode of 6-30 months
(front companies and online vendors for their short lives) and, after a seizure, lie low
for 3-10 months (front companies for good) unless they are among the bold 15 %; so some
later shipments follow a seizure, and the exporter's legitimate trade goes on with a
seizure on record. Diverted rows are drawn `DETERRENCE_OVERSAMPLE` times over the target
rate and those filed while lying low are dropped, which keeps the realised rate near the
target and steady over time.

Seizures: 40-60 % of diverted declarations (by typology) are seized, in India within days
or abroad within about 150 days (7 % later than 180 days, outside the label window);
seizures after the end of the period are not yet known and are dropped. About 6 % more are
intelligence seizures naming only an exporter or a consignee; about 0.15 % of legitimate
declarations are seized for paperwork (label noise); and compliance findings naming only
a legitimate exporter (0.6 % per declaration, 2.4 % on controlled lines) make a prior
seizure a signal, not a verdict.

Everything is vectorised with numpy; rows are produced in time-ordered chunks of
`CHUNK_ROWS`, so memory stays bounded and `write_history` streams to disk. The same seed
gives byte-identical files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.reference import load_reference

CHUNK_ROWS = 500_000

#: Typology -> target share of all declarations (drift typology: of the second half only).
TYPOLOGY_RATES: dict[str, float] = {
    "front_company": 0.0025,
    "no_authorisation": 0.0018,
    "misdeclared_cover": 0.0045,
    "undervaluation": 0.0015,
    "quantity_spike": 0.0015,
    "courier_dropship": 0.0035,
    "hub_transshipment": 0.0035,
    "consignee_mismatch": 0.0020,
    "shell_consignee": 0.0020,
    "complicit_broker": 0.0010,
    "west_africa_tramadol": 0.0025,
    "advance_payment": 0.0005,
}
DRIFT_TYPOLOGY = "new_route_drift"
#: Share of exporters (before front companies and vendors) that divert during one episode.
DIVERTER_SHARE = 0.15
#: Share of courier drop-shipping done by online vendors (new exporters); the rest by diverters.
VENDOR_SHARE = 0.65
#: Probability of 0-3 extra red flags on a diverted declaration (1-4 flags in total).
EXTRA_FLAG_P = (0.55, 0.30, 0.11, 0.04)
#: Share of legitimate controlled lines filed without the authorisation number (clerical omission).
CLERICAL_OMISSION = 0.12
#: Diverted declarations are drawn this many times over the target rate; those a diverter
#: would have filed while lying low after a seizure are dropped (see `_not_deterred`).
DETERRENCE_OVERSAMPLE = 2.5
#: Share of diverting exporters who carry on regardless of seizures.
BOLD_SHARE = 0.15
_NEVER = np.iinfo(np.int64).max
DRIFT_RATE = 0.0050
LEGITIMATE = "legitimate"


@dataclass(frozen=True)
class Preset:
    """How diverters behave: the default world, or one where they imitate legitimate traders.

    The default preset is the world described in `docs/synthetic-data.md`; "adversarial"
    keeps legitimate trade and the label mechanics (seizures, lags, noise) unchanged but
    makes diversion look ordinary shipment by shipment: fewer and milder red flags, the
    exporter's own transport, payment and authorisation habits, and organised rings (shell
    consignees and complicit brokers shared by several diverters, front companies shipping
    to ring buyers) whose traces lie in who trades with whom.
    """

    name: str
    typology_rates: dict[str, float]
    extra_flag_p: tuple[float, ...] = EXTRA_FLAG_P
    #: share of misdeclared covers whose description leaks the real substance
    leak_share: float = 0.15
    #: under-declared share of undervaluation rows, and the ranges of under- and over-invoicing
    under_share: float = 0.6
    under_range: tuple[float, float] = (0.1, 0.4)
    over_range: tuple[float, float] = (2.5, 5.0)
    spike_range: tuple[float, float] = (4.0, 15.0)
    west_africa_range: tuple[float, float] = (1.5, 6.0)
    #: diverted rows fly at least this often (the exporter's own air share otherwise)
    air_floor: float = 0.1
    #: share of diverted rows with the exporter's usual payment terms; extra ADVANCE share
    own_payment: float = 0.6
    extra_advance: float = 0.1
    #: front companies' and West African loads' variants: under a cover, unauthorised
    cover_p: tuple[float, float] = (0.15, 0.30)  # (front companies, West Africa)
    unauthorised_p: tuple[float, float] = (0.20, 0.40)
    #: established diverters' buyers: a regular buyer (ordinary, subtle typologies), a ring buyer
    regular_buyer: tuple[float, float] = (0.4, 0.6)
    ring_buyer: float = 0.35
    #: organised rings (adversarial only): front companies' ring and shell buyers, shells per diverter,
    #: complicit brokers and how often ring members file through their ring's broker
    front_ring_buyer: float = 0.0
    front_shell_buyer: float = 0.0
    shell_divisor: int = 5
    extra_complicit_brokers: int = 0
    ring_broker_share: float = 0.0

    @property
    def organised(self) -> bool:
        return self.extra_complicit_brokers > 0


PRESETS: dict[str, Preset] = {
    "default": Preset(name="default", typology_rates=TYPOLOGY_RATES),
    "adversarial": Preset(
        name="adversarial",
        typology_rates={
            "front_company": 0.0035,
            "no_authorisation": 0.0005,
            "misdeclared_cover": 0.0015,
            "undervaluation": 0.0010,
            "quantity_spike": 0.0010,
            "courier_dropship": 0.0015,
            "hub_transshipment": 0.0020,
            "consignee_mismatch": 0.0012,
            "shell_consignee": 0.0055,
            "complicit_broker": 0.0045,
            "west_africa_tramadol": 0.0012,
            "advance_payment": 0.0003,
        },
        extra_flag_p=(0.85, 0.13, 0.02, 0.0),
        leak_share=0.0,
        under_range=(0.55, 0.85),
        over_range=(1.4, 2.0),
        spike_range=(2.0, 4.0),
        west_africa_range=(1.5, 5.0),
        air_floor=0.0,
        own_payment=0.7,
        extra_advance=0.0,
        cover_p=(0.10, 0.15),
        unauthorised_p=(0.05, 0.10),
        regular_buyer=(0.25, 0.35),
        ring_buyer=0.55,
        front_ring_buyer=0.5,
        front_shell_buyer=0.3,
        shell_divisor=12,
        extra_complicit_brokers=3,
        ring_broker_share=0.6,
    ),
}

#: Probability that a diverted declaration of each typology is seized (any time).
SEIZURE_PROBABILITY: dict[str, float] = {
    "courier_dropship": 0.60,
    "west_africa_tramadol": 0.55,
    "misdeclared_cover": 0.50,
    "front_company": 0.50,
    "quantity_spike": 0.40,
    "undervaluation": 0.40,
    DRIFT_TYPOLOGY: 0.50,
}
DEFAULT_SEIZURE_PROBABILITY = 0.45
#: Paperwork seizures of legitimate declarations (controlled lines, other lines).
PAPERWORK_CONTROLLED = 0.005
PAPERWORK_OTHER = 0.001
#: Compliance findings naming only the exporter, per legitimate declaration.
COMPLIANCE_FINDINGS = 0.006

# Red flags a diverted declaration can show; typology i's defining flag is FLAGS[i].
FLAGS: tuple[str, ...] = (*TYPOLOGY_RATES, DRIFT_TYPOLOGY)
_F = {name: i for i, name in enumerate(FLAGS)}
# Pairs that do not make sense together (the second is dropped when the first is defining or drawn).
_INCOMPATIBLE = [
    ("courier_dropship", "west_africa_tramadol"),
    ("courier_dropship", "quantity_spike"),
    ("courier_dropship", "hub_transshipment"),
    ("courier_dropship", "consignee_mismatch"),
    ("courier_dropship", "shell_consignee"),
    ("misdeclared_cover", "no_authorisation"),
    ("front_company", "quantity_spike"),
    ("new_route_drift", "west_africa_tramadol"),
    ("new_route_drift", "courier_dropship"),
    ("new_route_drift", "hub_transshipment"),
    ("new_route_drift", "consignee_mismatch"),
    ("new_route_drift", "misdeclared_cover"),
    ("new_route_drift", "no_authorisation"),
]

# Destination weights, roughly after the shape of India's pharma exports (US first, then
# Europe, Africa, CIS, Latin America, Asia).
DESTINATIONS: dict[str, float] = {
    "US": 30.0, "GB": 3.2, "ZA": 3.0, "RU": 2.5, "NG": 2.4, "BR": 2.0, "DE": 2.0, "NL": 1.8, "FR": 1.5,
    "AU": 1.5, "CA": 1.5, "AE": 2.0, "KE": 1.2, "GH": 1.0, "TZ": 1.0, "UG": 0.8, "PH": 1.2, "VN": 1.0,
    "MM": 0.7, "LK": 1.0, "NP": 1.2, "BD": 1.0, "ET": 0.8, "CI": 0.6, "SN": 0.4, "CM": 0.5, "BJ": 0.3,
    "TG": 0.3, "SL": 0.15, "NE": 0.1, "ML": 0.2, "BF": 0.2, "LR": 0.1, "UZ": 0.8, "KZ": 0.6, "UA": 0.6,
    "TR": 0.8, "EG": 0.6, "SA": 1.0, "IR": 0.6, "IQ": 0.5, "YE": 0.15, "MX": 0.8, "CL": 0.6, "CO": 0.6,
    "PE": 0.5, "CN": 1.0, "JP": 0.8, "MY": 0.8, "SG": 0.6, "HK": 0.3, "TH": 0.6, "ID": 0.8, "BE": 1.0,
    "IT": 1.0, "ES": 0.8, "PL": 0.5, "LY": 0.1, "SD": 0.15, "AF": 0.4, "KH": 0.4, "PA": 0.2, "DO": 0.3,
    "GT": 0.3, "JM": 0.2, "MA": 0.3, "DZ": 0.5, "IL": 0.3, "CH": 0.5, "SE": 0.3, "ZM": 0.4, "MZ": 0.4,
    "AO": 0.3, "CD": 0.3, "MW": 0.2, "ZW": 0.3, "SO": 0.1,
}  # fmt: skip
WEST_AFRICA = {
    "NG": 4,
    "GH": 3,
    "SL": 2,
    "NE": 2,
    "BJ": 2,
    "TG": 2,
    "CM": 1,
    "ML": 1,
    "BF": 1,
    "LR": 1,
    "CI": 1,
}
COURIER_DESTINATIONS = {"US": 0.55, "AU": 0.30, "GB": 0.10, "CA": 0.05}
DRIFT_DESTINATIONS = {"LY": 0.5, "SD": 0.3, "YE": 0.2}
#: Hub -> weight as a declared transshipment point / consignee base.
HUB_WEIGHTS = {"AE": 5, "LK": 3, "SG": 2, "MY": 1.5, "TG": 1, "MA": 0.7, "OM": 0.8, "HK": 0.6, "BE": 0.6,
               "NL": 0.6, "PA": 0.4, "EG": 0.4}  # fmt: skip
DIVERSION_HUBS = {"AE": 5, "TG": 3, "LK": 1, "MY": 1, "HK": 1, "MA": 1, "OM": 1}
SHELL_COUNTRIES = {"AE": 4, "HK": 1, "NG": 2, "GH": 1, "US": 1, "SG": 1, "TG": 1}
SEA_PORTS = {"INNSA": 0.42, "INMUN": 0.25, "INMAA": 0.10, "INPAV": 0.06, "INHZA": 0.05, "INTUT": 0.04,
             "INCCU": 0.05, "INVTZ": 0.03}  # fmt: skip
AIR_PORTS = {"INBOM": 0.30, "INDEL": 0.25, "INHYD": 0.18, "INBLR": 0.10, "INAMD": 0.09, "INMAA": 0.05,
             "INCCU": 0.03}  # fmt: skip
COURIER_PORTS = {"INBOM": 0.40, "INDEL": 0.35, "INMAA": 0.10, "INHYD": 0.08, "INBLR": 0.07}
PAYMENT = ("LC", "ADVANCE", "OPEN_ACCOUNT", "CAD", "OTHER")
PAYMENT_WEIGHTS = np.array([0.25, 0.15, 0.35, 0.22, 0.03])
INDIAN_AGENCIES = ("NCB", "DRI", "CUSTOMS-SIIB")
FOREIGN_AGENCIES = {"US": "US-CBP", "AU": "AU-ABF", "GB": "UK-BORDER-FORCE", "CA": "CA-CBSA", "NG": "NG-NDLEA",
                    "GH": "GH-NACOB", "AE": "AE-DUBAI-CUSTOMS", "TR": "TR-CUSTOMS"}  # fmt: skip

DESCRIPTION_SUFFIXES = (
    "",
    "",
    "",
    " (10X10 BLISTER)",
    " IN ALU-ALU STRIPS",
    " EXPORT PACK",
    " (AS PER INVOICE)",
)

# Controlled products that licensed manufacturers export legitimately (with authorisation).
# (key, hs8, description, form, unit, unit value USD, substance)
_LICENSED_PRODUCTS = [
    ("tramadol_tab50", "30049099", "TRAMADOL HYDROCHLORIDE TABLETS 50MG", "dosage", "NOS", 1.6, "tramadol"),
    ("tramadol_cap100", "30049099", "TRAMADOL HYDROCHLORIDE CAPSULES 100MG", "dosage", "NOS", 2.2, "tramadol"),
    ("tramadol_api", "29225090", "TRAMADOL HYDROCHLORIDE IP (BULK)", "bulk", "KGM", 65.0, "tramadol"),
    ("codeine_api", "29391100", "CODEINE PHOSPHATE IP", "bulk", "KGM", 1400.0, "codeine"),
    ("codeine_syrup", "30049099", "CODEINE PHOSPHATE AND CHLORPHENIRAMINE SYRUP 100ML", "dosage", "NOS", 0.9,
     "codeine"),
    ("pse_api", "29394200", "PSEUDOEPHEDRINE HYDROCHLORIDE USP", "bulk", "KGM", 70.0, "pseudoephedrine"),
    ("ephedrine_api", "29394100", "EPHEDRINE HYDROCHLORIDE BP", "bulk", "KGM", 90.0, "ephedrine"),
    ("alprazolam_api", "29339100", "ALPRAZOLAM USP", "bulk", "KGM", 600.0, "benzodiazepines"),
    ("alprazolam_tab", "30049099", "ALPRAZOLAM TABLETS 0.5MG", "dosage", "NOS", 1.1, "benzodiazepines"),
    ("diazepam_tab", "30049099", "DIAZEPAM TABLETS IP 5MG", "dosage", "NOS", 0.8, "benzodiazepines"),
    ("fentanyl_inj", "30049099", "FENTANYL CITRATE INJECTION 50MCG/ML", "dosage", "NOS", 2.5, "fentanyl"),
]  # fmt: skip
# What diverted consignments really carry: (key, hs8, truthful description, form, unit, value, substance, weight)
_DIVERTED_PRODUCTS = [
    ("tramadol_225", "30049099", "TRAMADOL HYDROCHLORIDE TABLETS 225MG", "dosage", "NOS", 1.7, "tramadol", 0.30),
    ("tramadol_200", "30049099", "TRAMADOL 200MG TABLETS", "dosage", "NOS", 1.6, "tramadol", 0.12),
    ("tramadol_100", "30049099", "TRAMADOL HYDROCHLORIDE CAPSULES 100MG", "dosage", "NOS", 1.9, "tramadol", 0.08),
    ("alprazolam_2", "30049099", "ALPRAZOLAM TABLETS 2MG", "dosage", "NOS", 1.5, "benzodiazepines", 0.10),
    ("codeine_syrup", "30049099", "CODEINE PHOSPHATE COUGH SYRUP 100ML", "dosage", "NOS", 1.2, "codeine", 0.08),
    ("pse_api", "29394200", "PSEUDOEPHEDRINE HYDROCHLORIDE USP", "bulk", "KGM", 70.0, "pseudoephedrine", 0.10),
    ("ephedrine_api", "29394100", "EPHEDRINE HYDROCHLORIDE", "bulk", "KGM", 90.0, "ephedrine", 0.07),
    ("npp", "29333700", "N-PHENETHYL-4-PIPERIDONE (NPP)", "bulk", "KGM", 150.0, "npp", 0.05),
    ("anpp", "29333600", "4-ANPP", "bulk", "KGM", 250.0, "anpp", 0.03),
    ("4ap", "29333900", "4-ANILINOPIPERIDINE (4-AP)", "bulk", "KGM", 120.0, "4-ap", 0.03),
    ("pmk", "29329200", "PMK GLYCIDATE", "bulk", "KGM", 80.0, "pmk", 0.02),
    ("p2p", "29143100", "PHENYLACETONE (P-2-P)", "bulk", "KGM", 60.0, "p-2-p", 0.02),
]  # fmt: skip
_DRIFT_PRODUCTS = [
    ("pregabalin_300", "30049099", "PREGABALIN CAPSULES 300MG", "dosage", "NOS", 1.4, "pregabalin", 0.7),
    ("nitazene", "29339900", "BENZIMIDAZOLE DERIVATIVE (PHARMA INTERMEDIATE)", "bulk", "KGM", 300.0,
     "nitazene-analogue", 0.3),
]  # fmt: skip
# Cover descriptions for misdeclared consignments (dosage forms, then bulk chemicals).
_DOSAGE_COVERS = ("DICLOFENAC SODIUM TABLETS 50MG", "PARACETAMOL TABLETS IP 500MG", "IBUPROFEN TABLETS BP 400MG",
                  "MULTIVITAMIN TABLETS", "ASSORTED MEDICINES (GENERIC)", "CHLORPHENIRAMINE SYRUP 100ML")  # fmt: skip
_DOSAGE_COVER_HS = ("30049099", "30049099", "30049099", "30045090", "30049099", "30049099")
_BULK_COVERS = ("PHARMACEUTICAL INTERMEDIATE (HETEROCYCLIC)", "PARACETAMOL IP (BULK DRUG)",
                "METFORMIN HCL USP DC GRADE", "ORGANIC CHEMICAL (LAB REAGENT)")  # fmt: skip
_BULK_COVER_HS = ("29339900", "29242990", "29252990", "29420090")
# What parcels sent by courier/post say they contain (the Mumbai 2021 case hid tablets in snacks).
_PARCEL_COVERS = (
    "AYURVEDIC MEDICINE (PERSONAL USE)",
    "HERBAL SUPPLEMENT CAPSULES",
    "ASSORTED SNACKS",
    "GIFT ITEMS",
)
_PARCEL_COVER_HS = ("30049011", "21069099", "21069099", "95059090")
# Leaked descriptions: the substance is named although the heading is generic.
_LEAKS = {"dosage": "TRAMADOL 225MG", "bulk": "PSEUDOEPHEDRINE HCL (CHEMICAL)"}
# Ayurvedic and herbal products (ITC-HS 3004.90.11, 2106.90) of the parcel-heavy exporters.
_AYURVEDIC_PRODUCTS = [
    ("ashwagandha", "30049011", "ASHWAGANDHA CAPSULES 500MG", "dosage", "NOS", 0.9, ""),
    ("triphala", "30049011", "TRIPHALA CHURNA 100G", "dosage", "NOS", 1.1, ""),
    ("chyawanprash", "30049011", "CHYAWANPRASH 500G", "dosage", "NOS", 3.0, ""),
    ("ayurvedic", "30049011", "AYURVEDIC MEDICINE (PERSONAL USE)", "dosage", "NOS", 1.0, ""),
    ("herbal", "21069099", "HERBAL SUPPLEMENT CAPSULES", "dosage", "NOS", 0.8, ""),
    ("neem", "30049011", "NEEM CAPSULES 60S", "dosage", "NOS", 0.7, ""),
]  # fmt: skip
#: Where ayurvedic and herbal exporters sell (mostly parcels to individuals in the first four).
AYURVEDIC_DESTINATIONS = {"US": 0.42, "GB": 0.18, "AU": 0.14, "CA": 0.10, "AE": 0.06, "DE": 0.05, "NL": 0.05}


@dataclass(frozen=True)
class _Products:
    """Product catalogue as parallel arrays (index = product code)."""

    key: np.ndarray
    hs: np.ndarray
    description: np.ndarray
    form: np.ndarray  # dosage | bulk | biological
    unit: np.ndarray
    unit_value: np.ndarray
    substance: np.ndarray  # seizure substance name ('' for ordinary medicines: then the API name)
    controlled: np.ndarray  # bool
    api: np.ndarray
    popularity: np.ndarray


@dataclass(frozen=True)
class _World:
    """Everything fixed across chunks: period, exporters, brokers, consignee pools, products."""

    start: np.datetime64
    n_days: int
    season_cdf: np.ndarray  # cumulative seasonal mass, length n_days + 1
    chunk_days: np.ndarray  # day boundaries of the time-ordered chunks
    chunk_rows: np.ndarray
    mid_day: int
    drift: bool
    preset: Preset
    products: _Products
    legit_codes: dict[str, np.ndarray]  # form -> ordinary product codes
    licensed_codes: dict[str, np.ndarray]
    ayurvedic_codes: np.ndarray
    diverted_codes: np.ndarray
    diverted_weights: np.ndarray
    drift_codes: np.ndarray
    drift_weights: np.ndarray
    # exporters
    exporter_id: np.ndarray
    exp_start: np.ndarray
    exp_end: np.ndarray
    exp_size: np.ndarray
    exp_kind: np.ndarray  # 0 API maker, 1 formulator, 2 merchant, 3 ayurvedic / herbal
    exp_licensed: np.ndarray  # licensed for controlled products
    exp_products: np.ndarray  # (n, 6) product codes
    exp_dests: np.ndarray  # (n, 6) destination codes
    exp_brokers: np.ndarray  # (n, 2) broker codes
    exp_sea: np.ndarray
    exp_air: np.ndarray
    exp_payment: np.ndarray
    exp_qscale: np.ndarray
    exp_price: np.ndarray
    exp_air_share: np.ndarray
    exp_courier_share: np.ndarray  # parcels (ayurvedic retail, samples)
    exp_hub_share: np.ndarray  # sea shipments declared via a hub
    exp_hub: np.ndarray  # the exporter's hub (transshipment point and distributor base)
    exp_mismatch_share: np.ndarray  # sales through a distributor in its hub
    exp_new_buyer: np.ndarray  # share of one-off new buyers
    exp_tender: np.ndarray  # share of low-priced tender lots
    exp_africa: np.ndarray  # licensed exporter supplying West African importers
    exp_wa_dest: np.ndarray  # its West African market
    exp_hash: np.ndarray
    exp_ring_hash: np.ndarray  # diverters, front companies and vendors: their ring's (shared buyers)
    exp_ep_start: np.ndarray  # diversion episode of established diverters (else the whole life)
    exp_ep_end: np.ndarray
    exp_bold: np.ndarray  # a diverter who carries on regardless of seizures
    exp_cooloff: np.ndarray  # seconds a diverter lies low after a seizure
    exp_low_until: np.ndarray  # lying low at the start of the period until (seconds; -1: not)
    diverter_codes: np.ndarray  # established exporters who also divert
    diverter_weights: np.ndarray
    front_codes: np.ndarray  # front companies
    vendor_codes: np.ndarray  # online vendors (parcels; also legitimate herbal trade)
    # brokers and consignees
    broker_id: np.ndarray
    complicit_brokers: np.ndarray
    countries: np.ndarray  # country code per country index
    country_index: dict[str, int]
    pool_offset: np.ndarray  # per country: regular consignee pool
    pool_size: np.ndarray
    indiv_offset: np.ndarray  # per country: individual recipients (courier)
    indiv_size: np.ndarray
    shell_codes: np.ndarray  # global consignee codes of shell consignees
    consignee_id: np.ndarray  # global consignee code -> id string
    consignee_country: np.ndarray  # global consignee code -> country index


def _normalise(weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.array(list(weights))
    p = np.array(list(weights.values()), dtype=float)
    return keys, p / p.sum()


def _pick(rng: np.random.Generator, weights: dict[str, float], size: int) -> np.ndarray:
    keys, p = _normalise(weights)
    return keys[rng.choice(len(keys), size=size, p=p)]


def _pick_countries(
    rng: np.random.Generator, world: _World, weights: dict[str, float], size: int
) -> np.ndarray:
    """Country indices drawn by weight."""
    keys, p = _normalise(weights)
    codes = np.array([world.country_index[c] for c in keys])
    return codes[rng.choice(len(keys), size=size, p=p)]


def _agency_for(country_code: np.ndarray) -> np.ndarray:
    """Foreign reporting agency per seizure country (national customs when not listed)."""
    uniques, inverse = np.unique(country_code.astype(str), return_inverse=True)
    names = np.array([FOREIGN_AGENCIES.get(c, f"{c}-CUSTOMS") for c in uniques], dtype=object)
    return names[inverse]


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a stable hash of uint64 values (wrapping arithmetic)."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _unit_float(x: np.ndarray) -> np.ndarray:
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _build_products(
    rng: np.random.Generator,
) -> tuple[_Products, dict, dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pharma = load_reference().pharma_hs
    rows: list[tuple] = []
    for rec in pharma.itertuples(index=False):
        suffix = {"dosage": "99", "bulk": "90", "biological": "00"}[rec.form]
        for template in rec.description_templates.split("|"):
            api = template.split()[0].lower()
            value = rec.typical_unit_value_usd * float(np.exp(rng.normal(0, 0.3)))
            rows.append(
                (api, rec.hs_code + suffix, template, rec.form, rec.quantity_unit, value, "", False, "legit")
            )
    for key, hs, desc, form, unit, value, substance in _LICENSED_PRODUCTS:
        rows.append((key, hs, desc, form, unit, value, substance, True, "licensed"))
    for key, hs, desc, form, unit, value, substance in _AYURVEDIC_PRODUCTS:
        rows.append((key, hs, desc, form, unit, value, substance, False, "ayurvedic"))
    for key, hs, desc, form, unit, value, substance, _w in _DIVERTED_PRODUCTS:
        rows.append((key, hs, desc, form, unit, value, substance, True, "diverted"))
    for key, hs, desc, form, unit, value, substance, _w in _DRIFT_PRODUCTS:
        rows.append((key, hs, desc, form, unit, value, substance, False, "drift"))
    frame = pd.DataFrame(rows, columns=["key", "hs", "description", "form", "unit", "unit_value", "substance",
                                        "controlled", "role"])  # fmt: skip
    frame["api"] = frame["description"].str.split().str[0].str.lower()
    role = frame["role"].to_numpy()
    products = _Products(
        key=frame["key"].to_numpy(dtype=object),
        hs=frame["hs"].to_numpy(dtype=object),
        description=frame["description"].to_numpy(dtype=object),
        form=frame["form"].to_numpy(dtype=object),
        unit=frame["unit"].to_numpy(dtype=object),
        unit_value=frame["unit_value"].to_numpy(dtype=float),
        substance=frame["substance"].to_numpy(dtype=object),
        controlled=frame["controlled"].to_numpy(dtype=bool),
        api=frame["api"].to_numpy(dtype=object),
        popularity=np.exp(rng.normal(0, 0.8, len(frame))),
    )
    form = products.form
    legit = {f: np.flatnonzero((role == "legit") & (form == f)) for f in ("dosage", "bulk", "biological")}
    licensed = {f: np.flatnonzero((role == "licensed") & (form == f)) for f in ("dosage", "bulk")}
    ayurvedic = np.flatnonzero(role == "ayurvedic")
    diverted = np.flatnonzero(role == "diverted")
    diverted_w = np.array([w for *_, w in _DIVERTED_PRODUCTS])
    drift = np.flatnonzero(role == "drift")
    drift_w = np.array([w for *_, w in _DRIFT_PRODUCTS])
    return (products, legit, licensed, ayurvedic, diverted, diverted_w / diverted_w.sum(), drift,
            drift_w / drift_w.sum())  # fmt: skip


def _season(start: np.datetime64, n_days: int) -> np.ndarray:
    days = start + np.arange(n_days).astype("timedelta64[D]")
    doy = (days - days.astype("datetime64[Y]")).astype(int)
    month = days.astype("datetime64[M]").astype(int) % 12 + 1
    weekday = (days.astype(int) + 3) % 7  # 0 = Monday
    weekday_factor = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.55, 0.12])[weekday]
    seasonal = (
        1.0 + 0.12 * np.sin(2 * np.pi * (doy - 80) / 365.25) + 0.25 * (month == 3) - 0.10 * (month == 11)
    )
    trend = 1.0 + 0.07 * np.arange(n_days) / 365.25
    return weekday_factor * seasonal * trend


def _build_world(
    rows: int,
    years: float,
    rng: np.random.Generator,
    start: str,
    drift: bool,
    preset: Preset = PRESETS["default"],
) -> _World:
    start_day = np.datetime64(start, "D")
    n_days = max(int(round(years * 365.25)), 30)
    season = _season(start_day, n_days)
    season_cdf = np.concatenate([[0.0], np.cumsum(season)])
    (products, legit_codes, licensed_codes, ayurvedic_codes, diverted_codes, diverted_w, drift_codes,
     drift_w) = _build_products(rng)  # fmt: skip
    countries = np.array(sorted(set(DESTINATIONS) | set(HUB_WEIGHTS) | set(SHELL_COUNTRIES) | {"IN"}))
    country_index = {c: i for i, c in enumerate(countries)}

    def country_draw(weights: dict[str, float], size: int | tuple[int, int]) -> np.ndarray:
        keys, p = _normalise(weights)
        codes = np.array([country_index[c] for c in keys])
        return codes[rng.choice(len(keys), size=size, p=p)]

    # Exporters: heavy-tailed sizes; a share enters (and leaves) during the period.
    n_exp = int(np.clip(7 * np.sqrt(rows), 80, 25_000))
    n_front = max(6, int(rows * preset.typology_rates["front_company"] / 5))
    n_vendor = max(6, int(rows * preset.typology_rates["courier_dropship"] * VENDOR_SHARE / 5))
    n_div = max(12, int(n_exp * DIVERTER_SHARE))
    n_all = n_exp + n_front + n_vendor
    size = np.minimum(np.exp(rng.normal(0.0, 1.5, n_all)), 400.0)
    exp_start = np.where(rng.random(n_all) < 0.30, rng.integers(0, n_days, n_all), 0)
    exp_end = np.where(rng.random(n_all) < 0.12, rng.integers(0, n_days, n_all) + 30, n_days)
    exp_end = np.clip(np.maximum(exp_end, exp_start + 60), 1, n_days)
    # Front companies: appear after the start, live 2-8 months, small ordinary trade as cover.
    # (Lives may begin before the period or end after it, so diversion is steady over time.)
    fronts = np.arange(n_exp, n_exp + n_front)
    front_start = rng.integers(-150, n_days - 30, n_front)
    exp_start[fronts] = np.maximum(front_start, 0)
    exp_end[fronts] = np.minimum(
        np.maximum(front_start + rng.integers(60, 240, n_front), exp_start[fronts] + 30), n_days
    )
    size[fronts] = np.exp(rng.normal(-1.5, 0.5, n_front))
    # Online vendors: appear after the start, sell herbal parcels (and drop-ship tablets) for 5-20 months.
    vendors = np.arange(n_exp + n_front, n_all)
    vendor_start = rng.integers(-300, n_days - 30, n_vendor)
    exp_start[vendors] = np.maximum(vendor_start, 0)
    exp_end[vendors] = np.minimum(
        np.maximum(vendor_start + rng.integers(150, 600, n_vendor), exp_start[vendors] + 30), n_days
    )
    size[vendors] = np.exp(rng.normal(0.0, 0.5, n_vendor))

    kind = rng.choice(4, size=n_all, p=[0.26, 0.36, 0.26, 0.12])  # API maker, formulator, merchant, herbal
    kind[fronts] = 2
    kind[vendors] = 3
    n_slots = 6
    exp_products = np.empty((n_all, n_slots), dtype=np.int64)
    form_p = {0: {"bulk": 0.85, "dosage": 0.15}, 1: {"dosage": 0.85, "biological": 0.07, "bulk": 0.08},
              2: {"dosage": 0.95, "biological": 0.05}}  # fmt: skip
    for k, shares in form_p.items():
        members = np.flatnonzero(kind == k)
        pool = np.concatenate([legit_codes[f] for f in shares])
        p = np.concatenate([products.popularity[legit_codes[f]] / products.popularity[legit_codes[f]].sum() * s
                            for f, s in shares.items()])  # fmt: skip
        exp_products[members] = pool[rng.choice(len(pool), size=(len(members), n_slots), p=p / p.sum())]
    herbal = np.flatnonzero(kind == 3)
    exp_products[herbal] = ayurvedic_codes[rng.integers(0, len(ayurvedic_codes), (len(herbal), n_slots))]
    # Licensed firms (bigger ones more often; a few merchants) export controlled products legitimately.
    licensed = rng.random(n_all) < np.select([kind < 2, kind == 2], [0.16, 0.05], 0.0) * np.clip(
        size, 0.5, 6.0
    )
    licensed[fronts] = False
    for kinds, form in (((0,), "bulk"), ((1, 2), "dosage")):
        members = np.flatnonzero(licensed & np.isin(kind, kinds))
        codes = licensed_codes[form]
        exp_products[members, 1] = codes[rng.integers(0, len(codes), len(members))]
        extra = members[rng.random(len(members)) < 0.4]
        exp_products[extra, 3] = codes[rng.integers(0, len(codes), len(extra))]

    exp_dests = country_draw(DESTINATIONS, (n_all, n_slots))
    exp_dests[herbal] = country_draw(AYURVEDIC_DESTINATIONS, (len(herbal), n_slots))
    # Half of the licensed firms supply West African importers (tramadol, codeine syrup) under authorisation.
    exp_africa = licensed & (rng.random(n_all) < 0.5)
    exp_wa_dest = country_draw(WEST_AFRICA, n_all)
    # Parcels: herbal exporters sell to individuals abroad; others send the odd sample.
    courier_share = np.where(rng.random(n_all) < 0.15, rng.uniform(0.02, 0.08, n_all), 0.004)
    courier_share[herbal] = rng.beta(3.0, 4.0, len(herbal)) * 0.9
    # Large manufacturers ship via hubs and sell through hub distributors; one-off buyers; tenders.
    exp_hub = country_draw(HUB_WEIGHTS, n_all)
    hub_share = np.where(size > 3, rng.uniform(0.1, 0.35, n_all), rng.uniform(0.0, 0.06, n_all))
    mismatch_share = np.where(rng.random(n_all) < 0.2, rng.uniform(0.1, 0.35, n_all), 0.005)
    # (Large manufacturers sell through stable distributor networks: fewer one-off buyers.)
    new_buyer = (
        rng.beta(1.2, 14.0, n_all)
        * np.where(kind == 2, 2.0, 1.0)
        * np.clip(2.5 / (1.0 + np.sqrt(size)), 0.2, 1.5)
    )
    tender = np.where((kind > 0) & (kind < 3) & (rng.random(n_all) < 0.15), rng.uniform(0.1, 0.4, n_all), 0.0)

    # Brokers: Zipf-like popularity; three mid-sized ones are complicit (and keep legitimate clients).
    n_brokers = int(np.clip(n_exp / 12, 20, 3000))
    broker_id = np.array([f"CB{n:05d}" for n in rng.choice(90_000, n_brokers, replace=False) + 10_000])
    broker_p = 1.0 / np.arange(1, n_brokers + 1) ** 0.9
    exp_brokers = rng.choice(n_brokers, size=(n_all, 2), p=broker_p / broker_p.sum())
    complicit = rng.choice(np.arange(4, min(30, n_brokers)), size=3, replace=False)

    # Established exporters who also divert: formulators and merchants of small to mid size, licensed
    # ones more often. Each diverts during one episode of 3-15 months of its life.
    established = np.arange(n_exp)
    candidates = established[(kind[:n_exp] == 1) | (kind[:n_exp] == 2)]
    candidates = candidates[size[candidates] < 150]
    p = 1.0 + 10.0 * licensed[candidates]
    diverters = rng.choice(candidates, size=min(n_div, len(candidates)), replace=False, p=p / p.sum())
    diverter_w = np.exp(rng.normal(0, 0.6, len(diverters)))
    ep_start, ep_end = exp_start.copy(), exp_end.copy()
    ep_len = rng.integers(180, 900, len(diverters))
    first = exp_start[diverters] - ep_len + 30
    ep_begin = first + (rng.random(len(diverters)) * (exp_end[diverters] - 30 - first)).astype(int)
    ep_start[diverters] = np.clip(ep_begin, exp_start[diverters], exp_end[diverters] - 30)
    ep_end[diverters] = np.clip(ep_begin + ep_len, ep_start[diverters] + 30, exp_end[diverters])
    # After a seizure a diverter lies low for 4-13 months (online vendors 2-8), a front company
    # for good. Diversion that began before the period may be lying low at its start.
    cooloff = rng.uniform(90, 300, n_all)
    cooloff[vendors] = rng.uniform(60, 240, n_vendor)
    cooloff[fronts] = 10 * 365.0
    began = np.full(n_all, 0)
    began[diverters] = np.where(exp_start[diverters] == 0, ep_begin, 0)
    began[fronts], began[vendors] = np.minimum(front_start, 0), np.minimum(vendor_start, 0)
    low_at_start = (began < 0) & (rng.random(n_all) < 0.5)
    lying_low_until = np.where(low_at_start, rng.random(n_all) * np.minimum(cooloff, 400) * 86_400, -1)

    # Consignee pools: regular buyers per destination, individual recipients for courier
    # destinations, and a few shell consignees shared by diverting exporters.
    n_countries = len(countries)
    w = np.array([DESTINATIONS.get(c, 0.3) + HUB_WEIGHTS.get(c, 0.0) for c in countries])
    pool_size = np.maximum(15, (w / w.sum() * n_exp * 4).astype(np.int64))
    indiv_size = np.array([max(200, rows // 60) if c in COURIER_DESTINATIONS else 50 for c in countries])
    pool_offset = np.concatenate([[0], np.cumsum(pool_size)[:-1]])
    indiv_offset = pool_size.sum() + np.concatenate([[0], np.cumsum(indiv_size)[:-1]])
    n_shell = max(6, (n_div + n_front + n_vendor) // preset.shell_divisor)
    shell_start = int(pool_size.sum() + indiv_size.sum())
    shell_codes = np.arange(shell_start, shell_start + n_shell)
    n_consignees = shell_start + n_shell
    consignee_country = np.empty(n_consignees, dtype=np.int64)
    for i in range(n_countries):
        consignee_country[pool_offset[i] : pool_offset[i] + pool_size[i]] = i
        consignee_country[indiv_offset[i] : indiv_offset[i] + indiv_size[i]] = i
    shell_countries = _pick(rng, SHELL_COUNTRIES, n_shell)
    consignee_country[shell_codes] = [country_index[c] for c in shell_countries]
    consignee_numbers = rng.choice(9_000_000, n_consignees, replace=False) + 1_000_000
    consignee_id = np.char.add("C", consignee_numbers.astype(str)).astype(object)

    exporter_numbers = rng.choice(9_000_000_000, n_all, replace=False) + 1_000_000_000
    exp_hash = _mix64(exporter_numbers.astype(np.uint64))
    # Diverting exporters work in rings of about four that share foreign buyers.
    members = np.concatenate([diverters, fronts, vendors])
    ring_hash = exp_hash.copy()
    ring_of = rng.integers(0, max(1, len(members) // 4), len(members))
    ring_hash[members] = _mix64(ring_of.astype(np.uint64) + 7)
    sea_keys, sea_p = _normalise(SEA_PORTS)
    air_keys, air_p = _normalise(AIR_PORTS)

    # Chunks: equal row counts over time windows of equal expected activity.
    starts = np.zeros(n_days + 1)
    np.add.at(starts, exp_start, size)
    np.add.at(starts, exp_end, -size)
    intensity = season * np.cumsum(starts)[:n_days]
    cum = np.concatenate([[0.0], np.cumsum(intensity)])
    n_chunks = max(1, -(-rows // CHUNK_ROWS))
    edges = np.searchsorted(cum, cum[-1] * np.arange(1, n_chunks) / n_chunks)
    chunk_days = np.unique(np.concatenate([[0], np.clip(edges, 1, n_days - 1), [n_days]]))
    n_chunks = len(chunk_days) - 1
    chunk_rows = np.full(n_chunks, rows // n_chunks)
    chunk_rows[: rows % n_chunks] += 1

    if preset.organised:
        # More complicit brokers; each ring files through one of them (its members' second broker),
        # and the ring's front companies too. (Drawn last: the default world stays as it was.)
        others = np.setdiff1d(np.arange(4, min(60, n_brokers)), complicit)
        complicit = np.concatenate(
            [
                complicit,
                rng.choice(others, size=min(preset.extra_complicit_brokers, len(others)), replace=False),
            ]
        )
        exp_brokers[members, 1] = complicit[ring_of % len(complicit)]

    return _World(
        start=start_day,
        n_days=n_days,
        season_cdf=season_cdf,
        chunk_days=chunk_days,
        chunk_rows=chunk_rows,
        mid_day=n_days // 2,
        drift=drift,
        preset=preset,
        products=products,
        legit_codes=legit_codes,
        licensed_codes=licensed_codes,
        ayurvedic_codes=ayurvedic_codes,
        diverted_codes=diverted_codes,
        diverted_weights=diverted_w,
        drift_codes=drift_codes,
        drift_weights=drift_w,
        exporter_id=exporter_numbers.astype(str).astype(object),
        exp_start=exp_start,
        exp_end=exp_end,
        exp_size=size,
        exp_kind=kind,
        exp_licensed=licensed,
        exp_products=exp_products,
        exp_dests=exp_dests,
        exp_brokers=exp_brokers,
        exp_sea=sea_keys[rng.choice(len(sea_keys), n_all, p=sea_p)],
        exp_air=air_keys[rng.choice(len(air_keys), n_all, p=air_p)],
        exp_payment=rng.choice(len(PAYMENT), n_all, p=PAYMENT_WEIGHTS),
        exp_qscale=rng.normal(0, 0.5, n_all) + 0.2 * np.log(size),
        exp_price=np.exp(rng.normal(0, 0.2, n_all)),
        exp_air_share=rng.beta(1.2, 6.0, n_all),
        exp_courier_share=courier_share,
        exp_hub_share=hub_share,
        exp_hub=exp_hub,
        exp_mismatch_share=mismatch_share,
        exp_new_buyer=new_buyer,
        exp_tender=tender,
        exp_africa=exp_africa,
        exp_wa_dest=exp_wa_dest,
        exp_hash=exp_hash,
        exp_ring_hash=ring_hash,
        exp_ep_start=ep_start,
        exp_ep_end=ep_end,
        exp_bold=rng.random(n_all) < BOLD_SHARE,
        exp_cooloff=(cooloff * 86_400).astype(np.int64),
        exp_low_until=lying_low_until.astype(np.int64),
        diverter_codes=diverters,
        diverter_weights=diverter_w,
        front_codes=fronts,
        vendor_codes=vendors,
        broker_id=broker_id,
        complicit_brokers=complicit,
        countries=countries,
        country_index=country_index,
        pool_offset=pool_offset,
        pool_size=pool_size,
        indiv_offset=indiv_offset,
        indiv_size=indiv_size,
        shell_codes=shell_codes,
        consignee_id=consignee_id,
        consignee_country=consignee_country,
    )


def _sample_exporters_and_days(
    world: _World,
    rng: np.random.Generator,
    codes: np.ndarray,
    weights: np.ndarray,
    lo: int,
    hi: int,
    n: int,
    episodes: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exporters (from `codes`, by weight x seasonal mass while active) and their days within [lo, hi).

    With `episodes`, an exporter is active only during its diversion episode.
    """
    first, last = (world.exp_ep_start, world.exp_ep_end) if episodes else (world.exp_start, world.exp_end)
    a = np.clip(first[codes], lo, hi)
    b = np.clip(last[codes], lo, hi)
    cdf = world.season_cdf
    mass = np.where(b > a, cdf[b] - cdf[a], 0.0)
    p = weights * mass
    if n == 0 or p.sum() <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    pick = rng.choice(len(codes), size=n, p=p / p.sum())
    u = cdf[a[pick]] + rng.random(n) * mass[pick]
    day = np.clip(np.searchsorted(cdf, u, side="right") - 1, a[pick], b[pick] - 1)
    return codes[pick], day


def _seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    hour_w = np.array(
        [1, 1, 1, 1, 1, 2, 4, 8, 14, 20, 24, 24, 22, 22, 24, 24, 22, 18, 14, 10, 7, 4, 2, 1], float
    )
    hours = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    return hours * 3600 + rng.integers(0, 3600, n)


def _regular_consignee(
    world: _World,
    exporter: np.ndarray,
    country: np.ndarray,
    slot: np.ndarray,
    skew: float = 1.6,
    ring: bool = False,
) -> np.ndarray:
    """A stable buyer of `exporter` in `country` (slot 0 = main buyer); with `skew` > 1 popular buyers are shared.

    With `ring`, the buyer is shared by the exporter's diversion ring.
    """
    h = _mix64((world.exp_ring_hash if ring else world.exp_hash)[exporter] ^ (slot.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
               ^ (country.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)))  # fmt: skip
    u = _unit_float(h) ** skew
    return world.pool_offset[country] + (u * world.pool_size[country]).astype(np.int64)


def _legit_rows(world: _World, rng: np.random.Generator, n: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    prods = world.products
    exporter, day = _sample_exporters_and_days(
        world, rng, np.arange(len(world.exporter_id)), world.exp_size, lo, hi, n
    )
    n = len(exporter)
    slot = np.minimum(rng.geometric(0.45, n) - 1, world.exp_products.shape[1] - 1)
    product = world.exp_products[exporter, slot]
    dslot = np.minimum(rng.geometric(0.5, n) - 1, world.exp_dests.shape[1] - 1)
    dest = world.exp_dests[exporter, dslot]
    form = prods.form[product]
    controlled = prods.controlled[product]
    herbal = world.exp_kind[exporter] == 3
    # Licensed tramadol / codeine tablets for West African importers, under authorisation.
    to_africa = controlled & (form == "dosage") & world.exp_africa[exporter] & (rng.random(n) < 0.7)
    dest[to_africa] = world.exp_wa_dest[exporter[to_africa]]
    # Market development: now and then a first shipment to a new destination.
    explore = ~to_africa & (rng.random(n) < 0.04)
    dest[explore] = _pick_countries(rng, world, DESTINATIONS, int(explore.sum()))

    # Transport: biologicals fly, a per-exporter air share; parcels (herbal retail, samples) by courier/post.
    r = rng.random(n)
    air = (form == "biological") & (r < 0.8) | (r < world.exp_air_share[exporter])
    mode = np.where(air, "AIR", "SEA").astype(object)
    courier = (rng.random(n) < world.exp_courier_share[exporter]) & ~to_africa & (form != "bulk")
    mode[courier] = np.where(rng.random(int(courier.sum())) < 0.8, "COURIER", "POST")
    port = np.where(mode == "SEA", world.exp_sea[exporter], world.exp_air[exporter]).astype(object)
    port[courier] = _pick(rng, COURIER_PORTS, int(courier.sum()))

    log_q = (
        np.where(prods.unit[product] == "KGM", np.log(400.0), np.log(15_000.0)) + world.exp_qscale[exporter]
    )
    log_q = log_q + rng.normal(0, 0.7, n) - 1.6 * (mode == "AIR")
    quantity = np.exp(log_q)
    quantity[courier] = np.exp(rng.normal(np.where(herbal[courier], np.log(20.0), np.log(40.0)), 0.9))
    # Occasional large orders (annual contracts) and container loads for West Africa.
    big = ~courier & (rng.random(n) < 0.02)
    quantity[big] *= rng.uniform(3, 10, int(big.sum()))
    quantity[to_africa] *= rng.uniform(1.5, 5, int(to_africa.sum()))
    unit_value = prods.unit_value[product] * world.exp_price[exporter] * np.exp(rng.normal(0, 0.25, n))
    unit_value *= np.where(courier, rng.uniform(0.5, 1.2, n), 1.0)
    # Tender lots (government and donor tenders, generic price wars): large and cheap.
    tender = ~courier & (form == "dosage") & (rng.random(n) < world.exp_tender[exporter])
    quantity[tender] *= rng.uniform(2, 6, int(tender.sum()))
    unit_value[tender] *= rng.uniform(0.3, 0.6, int(tender.sum()))

    # Buyers: stable per exporter; distributors in the exporter's hub buying for a neighbouring market;
    # one-off new buyers (often paying in advance); individuals for herbal parcels.
    cslot = np.minimum(rng.geometric(0.55, n) - 1, 7)
    consignee = _regular_consignee(world, exporter, dest, cslot)
    hub = world.exp_hub[exporter]
    mismatch = ~courier & (rng.random(n) < world.exp_mismatch_share[exporter]) & (hub != dest)
    consignee[mismatch] = _regular_consignee(world, exporter[mismatch], hub[mismatch], cslot[mismatch])
    new_buyer = ~courier & (rng.random(n) < world.exp_new_buyer[exporter])
    buyer_country = np.where(mismatch, hub, dest)[new_buyer]
    consignee[new_buyer] = world.pool_offset[buyer_country] + (
        rng.random(int(new_buyer.sum())) * world.pool_size[buyer_country]
    ).astype(np.int64)
    indiv = courier & (rng.random(n) < np.where(herbal, 0.85, 0.2))
    consignee[indiv] = world.indiv_offset[dest[indiv]] + (
        rng.random(int(indiv.sum())) * world.indiv_size[dest[indiv]]
    ).astype(np.int64)

    # Declared transshipment: large manufacturers via their hub; West African loads often via Lome.
    hub_keys, hub_p = _normalise(HUB_WEIGHTS)
    hub_codes = np.array([world.country_index[c] for c in hub_keys])
    transship = (mode == "SEA") & (rng.random(n) < world.exp_hub_share[exporter])
    ts_country = np.where(
        transship, np.where(rng.random(n) < 0.7, hub, hub_codes[rng.choice(len(hub_codes), n, p=hub_p)]), -1
    )
    ts_country[to_africa & (rng.random(n) < 0.3)] = world.country_index["TG"]
    ts_country[ts_country == dest] = -1

    payment = np.where(rng.random(n) < 0.7, world.exp_payment[exporter], rng.choice(5, n, p=PAYMENT_WEIGHTS))
    advance = (new_buyer & (rng.random(n) < 0.55)) | (indiv & (rng.random(n) < 0.8))
    advance |= to_africa & (rng.random(n) < 0.5)  # West African importers often pay in advance
    payment[advance] = PAYMENT.index("ADVANCE")
    payment[rng.random(n) < 0.02] = -1
    broker = world.exp_brokers[exporter, (rng.random(n) < 0.15).astype(np.int64)]
    broker[rng.random(n) < 0.03] = -1
    # Licensed controlled exports carry an authorisation, bar the odd clerical omission.
    authorised = controlled & (rng.random(n) > CLERICAL_OMISSION)

    hs = prods.hs[product].copy()
    description = _describe(rng, prods.description[product], empty_share=0.01)
    _parcel_cover(rng, courier & ~herbal & (rng.random(n) < 0.15), hs, description)
    return {
        "exporter": exporter, "day": day, "product": product, "hs": hs, "description": description, "dest": dest,
        "consignee": consignee, "mode": mode, "port": port, "quantity": quantity, "unit_value": unit_value,
        "payment": payment, "broker": broker, "authorised": authorised, "transship": ts_country,
        "typology": np.full(n, -1), "flags": np.zeros(n, dtype=np.int64),
    }  # fmt: skip


def _describe(rng: np.random.Generator, base: np.ndarray, empty_share: float) -> np.ndarray:
    suffix = np.array(DESCRIPTION_SUFFIXES, dtype=object)[
        rng.integers(0, len(DESCRIPTION_SUFFIXES), len(base))
    ]
    text = base + suffix
    text[rng.random(len(base)) < empty_share] = ""
    return text


def _parcel_cover(
    rng: np.random.Generator, mask: np.ndarray, hs: np.ndarray, description: np.ndarray
) -> None:
    """Overwrite (in place) heading and description of the masked parcels with parcel cover goods."""
    idx = np.flatnonzero(mask)
    which = rng.integers(0, len(_PARCEL_COVERS), len(idx))
    hs[idx] = np.array(_PARCEL_COVER_HS, dtype=object)[which]
    description[idx] = np.array(_PARCEL_COVERS, dtype=object)[which]


def _draw_flags(
    rng: np.random.Generator, typology: np.ndarray, extra_flag_p: tuple[float, ...] = EXTRA_FLAG_P
) -> np.ndarray:
    """Boolean (n, len(FLAGS)) matrix: the typology's flag plus 0-3 compatible extra flags.

    Front companies and West African tramadol get at most one extra (they add their own
    variants later, and no row shows more than four flags).
    """
    n = len(typology)
    n_flags = len(FLAGS)
    keys = rng.random((n, n_flags))
    keys[:, _F[DRIFT_TYPOLOGY]] = -1.0  # the drift route is never an extra flag
    keys[np.arange(n), typology] = 2.0
    for a, b in _INCOMPATIBLE:
        ia, ib = _F[a], _F[b]
        keys[typology == ia, ib] = -1.0
        keys[typology == ib, ia] = -1.0
    extra = rng.choice(4, size=n, p=extra_flag_p)  # 1-4 flags in total
    capped = (typology == _F["front_company"]) | (typology == _F["west_africa_tramadol"])
    extra[capped] = np.minimum(extra[capped], 1)
    order = np.argsort(-keys, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_flags)[None, :].repeat(n, 0), axis=1)
    on = (rank <= extra[:, None]) & (keys >= 0)
    # Drop the second of an incompatible pair drawn together as extras.
    for a, b in _INCOMPATIBLE:
        on[on[:, _F[a]], _F[b]] = False
    on[np.arange(n), typology] = True
    return on


def _diverted_rows(world: _World, rng: np.random.Generator, counts: np.ndarray, lo: int, hi: int) -> dict:
    prods = world.products
    preset = world.preset
    typology = np.repeat(np.arange(len(FLAGS)), counts)
    n = len(typology)
    flags = _draw_flags(rng, typology, preset.extra_flag_p)
    is_drift = typology == _F[DRIFT_TYPOLOGY]
    # Variants: a third of West African tramadol comes from front companies (Mundra 2024), and West
    # African loads and front companies' goods are often unauthorised or under a cover description.
    wa = flags[:, _F["west_africa_tramadol"]] & ~is_drift
    flags[(typology == _F["west_africa_tramadol"]) & (rng.random(n) < 0.35), _F["front_company"]] = True
    is_front = flags[:, _F["front_company"]]
    flags[is_front, _F["quantity_spike"]] = False
    r = rng.random(n)
    variant = (typology == _F["west_africa_tramadol"]) | (typology == _F["front_company"])
    cover_p = np.where(wa, preset.cover_p[1], preset.cover_p[0])
    unauth_p = cover_p + np.where(wa, preset.unauthorised_p[1], preset.unauthorised_p[0])
    flags[variant & (r < cover_p) & ~flags[:, _F["no_authorisation"]], _F["misdeclared_cover"]] = True
    no_cover = ~flags[:, _F["misdeclared_cover"]]
    flags[variant & (r >= cover_p) & (r < unauth_p) & no_cover, _F["no_authorisation"]] = True
    f = {name: flags[:, i] for name, i in _F.items()}
    courier = f["courier_dropship"]
    # Who ships: front companies, online vendors (most drop-shipping), established diverters during
    # their diversion episode (the rest), and established diverters on the new route (drift).
    is_vendor = courier & ~is_front & (rng.random(n) < VENDOR_SHARE)
    exporter = np.empty(n, dtype=np.int64)
    day = np.empty(n, dtype=np.int64)
    groups = [
        (is_front, world.front_codes, np.ones(len(world.front_codes)), lo, hi, False),
        (is_vendor, world.vendor_codes, np.ones(len(world.vendor_codes)), lo, hi, False),
        (~is_front & ~is_vendor & ~is_drift, world.diverter_codes, world.diverter_weights, lo, hi, True),
        (
            ~is_front & is_drift,
            world.diverter_codes,
            world.diverter_weights,
            max(lo, world.mid_day),
            hi,
            False,
        ),
    ]
    keep = np.ones(n, dtype=bool)
    for mask, codes, weights, a, b, episodes in groups:
        idx = np.flatnonzero(mask)
        e, d = _sample_exporters_and_days(world, rng, codes, weights, a, b, len(idx), episodes)
        if len(e) < len(idx):  # nobody of this group is active in the window
            keep[idx] = False
            continue
        exporter[idx], day[idx] = e, d
    # Drift rows from front companies must also fall in the second half.
    keep &= ~is_drift | (day >= world.mid_day)
    if not keep.all():
        typology, flags, exporter, day = typology[keep], flags[keep], exporter[keep], day[keep]
        is_drift, is_front, is_vendor = is_drift[keep], is_front[keep], is_vendor[keep]
        n = len(typology)
    f = {name: flags[:, i] for name, i in _F.items()}
    courier, wa, mis = f["courier_dropship"], f["west_africa_tramadol"], f["misdeclared_cover"]
    established = ~is_front & ~is_vendor & ~is_drift

    # What is really shipped: licensed diverters mostly divert their own licensed line.
    product = world.diverted_codes[rng.choice(len(world.diverted_codes), n, p=world.diverted_weights)]
    own_line = established & world.exp_licensed[exporter] & (rng.random(n) < 0.8)
    product[own_line] = world.exp_products[exporter[own_line], 1]
    tramadol_225 = world.diverted_codes[0]
    product[wa] = tramadol_225
    dosage_div = world.diverted_codes[prods.form[world.diverted_codes] == "dosage"]
    product[courier] = dosage_div[rng.integers(0, 4, int(courier.sum()))]  # tramadol / alprazolam tablets
    product[is_drift] = world.drift_codes[rng.choice(len(world.drift_codes), int(is_drift.sum()),
                                                     p=world.drift_weights)]  # fmt: skip
    form = prods.form[product]

    # Declared heading and description: truthful, cover goods, or a cover heading that leaks.
    hs = prods.hs[product].copy()
    description = _describe(rng, prods.description[product], empty_share=0.01)
    for form_name, covers, cover_hs in (("dosage", _DOSAGE_COVERS, _DOSAGE_COVER_HS),
                                        ("bulk", _BULK_COVERS, _BULK_COVER_HS)):  # fmt: skip
        idx = np.flatnonzero(mis & (form == form_name))
        which = rng.integers(0, len(covers), len(idx))
        hs[idx] = np.array(cover_hs, dtype=object)[which]
        description[idx] = _describe(rng, np.array(covers, dtype=object)[which], empty_share=0.05)
        leak = idx[rng.random(len(idx)) < preset.leak_share]
        description[leak] = _LEAKS[form_name]
        hs[leak] = np.array(cover_hs, dtype=object)[0]
    parcel = courier & (rng.random(n) < 0.7)
    _parcel_cover(rng, parcel, hs, description)
    # Truthful controlled goods carry an authorisation (obtained or forged) unless the typology says not.
    authorised = (
        ~mis & ~f["no_authorisation"] & ~courier & prods.controlled[product] & (hs == prods.hs[product])
    )

    # Route.
    dest = world.exp_dests[exporter, np.minimum(rng.geometric(0.5, n) - 1, 5)]
    dest_codes = world.country_index
    dest[wa] = _pick_countries(rng, world, WEST_AFRICA, int(wa.sum()))
    dest[courier] = _pick_countries(rng, world, COURIER_DESTINATIONS, int(courier.sum()))
    dest[is_drift] = _pick_countries(rng, world, DRIFT_DESTINATIONS, int(is_drift.sum()))
    # A shell consignee is mostly in the destination country itself.
    shell_pick = world.shell_codes[rng.integers(0, len(world.shell_codes), n)]
    at_home = f["shell_consignee"] & ~courier & ~wa & ~is_drift & (rng.random(n) < 0.8)
    dest[at_home] = world.consignee_country[shell_pick[at_home]]

    mode = np.where(
        rng.random(n) < np.maximum(world.exp_air_share[exporter], preset.air_floor), "AIR", "SEA"
    ).astype(object)
    mode[wa | is_drift] = "SEA"
    mode[courier] = np.where(rng.random(int(courier.sum())) < 0.75, "COURIER", "POST")
    port = np.where(mode == "SEA", world.exp_sea[exporter], world.exp_air[exporter]).astype(object)
    port[courier] = _pick(rng, COURIER_PORTS, int(courier.sum()))
    port[is_drift & (rng.random(n) < 0.6)] = "INMUN"

    ts = np.full(n, -1)
    hub = f["hub_transshipment"]
    ts[hub] = _pick_countries(rng, world, DIVERSION_HUBS, int(hub.sum()))
    ts[hub & wa & (rng.random(n) < 0.6)] = dest_codes["TG"]
    ts[is_drift] = dest_codes["TR"]
    ts[ts == dest] = -1

    # Buyers: a regular buyer (diversion hidden in ordinary trade), the diverter's own recurring buyer,
    # a new buyer, a hub trading company, a shared shell, or an individual.
    regular = _regular_consignee(world, exporter, dest, np.minimum(rng.geometric(0.55, n) - 1, 7))
    own = _regular_consignee(world, exporter, dest, 20 + rng.integers(0, 2, n), skew=1.0, ring=True)
    fresh = world.pool_offset[dest] + (rng.random(n) * world.pool_size[dest]).astype(np.int64)
    subtle = f["quantity_spike"] | f["complicit_broker"] | f["undervaluation"]
    p_regular = np.where(subtle, preset.regular_buyer[1], preset.regular_buyer[0]) * established
    u = rng.random(n)
    consignee = np.where(u < p_regular, regular, np.where(u < p_regular + preset.ring_buyer, own, fresh))
    consignee[hub] = fresh[hub]  # behind a transshipment: a buyer never seen before
    hub_c = _pick_countries(rng, world, DIVERSION_HUBS, n)
    hub_c[is_drift] = dest_codes["TR"]
    mm = (f["consignee_mismatch"] | is_drift) & (hub_c != dest)
    hub_own = _regular_consignee(
        world, exporter[mm], hub_c[mm], 20 + rng.integers(0, 2, int(mm.sum())), skew=1.0, ring=True
    )
    hub_fresh = world.pool_offset[hub_c[mm]] + (
        rng.random(int(mm.sum())) * world.pool_size[hub_c[mm]]
    ).astype(np.int64)
    consignee[mm] = np.where(rng.random(int(mm.sum())) < 0.5, hub_own, hub_fresh)
    consignee[f["shell_consignee"]] = shell_pick[f["shell_consignee"]]
    if preset.organised:
        # Front companies, with no history of their own, ship to their ring's buyers and shells.
        v = rng.random(n)
        ring_front = is_front & ~courier & ~mm & ~hub
        consignee[ring_front & (v < preset.front_ring_buyer)] = own[
            ring_front & (v < preset.front_ring_buyer)
        ]
        to_shell = (
            ring_front
            & (v >= preset.front_ring_buyer)
            & (v < preset.front_ring_buyer + preset.front_shell_buyer)
        )
        consignee[to_shell] = shell_pick[to_shell]
    consignee[courier] = world.indiv_offset[dest[courier]] + (
        rng.random(int(courier.sum())) * world.indiv_size[dest[courier]]
    ).astype(np.int64)

    # Quantities and values.
    bulk = prods.unit[product] == "KGM"
    log_q = (
        np.where(bulk, np.log(400.0), np.log(15_000.0)) + world.exp_qscale[exporter] + rng.normal(0, 0.7, n)
    )
    log_q -= 1.6 * (mode == "AIR")
    quantity = np.exp(log_q)
    spike = f["quantity_spike"]
    quantity[spike] *= rng.uniform(*preset.spike_range, int(spike.sum()))
    quantity[wa] *= rng.uniform(*preset.west_africa_range, int(wa.sum()))  # container loads, as at Mundra
    quantity[courier] = np.exp(rng.normal(np.log(15), 0.9, int(courier.sum())))
    # Declared unit value follows the *declared* goods (cover goods for misdeclared rows and parcels).
    value_ref = prods.unit_value[product].copy()
    value_ref[mis & ~bulk] = 1.5
    value_ref[mis & bulk] = 8.0
    value_ref[parcel] = 1.0
    unit_value = value_ref * world.exp_price[exporter] * np.exp(rng.normal(0, 0.3, n))
    unit_value[courier] *= rng.uniform(0.5, 1.2, int(courier.sum()))
    under = f["undervaluation"]
    # Mostly under-declared; some over-invoiced (2.5-5x), which moves the buyer's money out.
    unit_value[under] = value_ref[under] * np.where(
        rng.random(int(under.sum())) < preset.under_share,
        rng.uniform(*preset.under_range, int(under.sum())),
        rng.uniform(*preset.over_range, int(under.sum())),
    )

    payment = np.where(
        rng.random(n) < preset.own_payment, world.exp_payment[exporter], rng.choice(5, n, p=PAYMENT_WEIGHTS)
    )
    payment[(rng.random(n) < preset.extra_advance) | (courier & (rng.random(n) < 0.6))] = PAYMENT.index(
        "ADVANCE"
    )
    payment[rng.random(n) < 0.02] = -1  # as often undeclared as in legitimate trade
    payment[f["advance_payment"]] = PAYMENT.index("ADVANCE")
    broker = world.exp_brokers[exporter, (rng.random(n) < 0.15).astype(np.int64)]
    broker[rng.random(n) < 0.03] = -1
    comp = f["complicit_broker"]
    broker[comp] = world.complicit_brokers[rng.integers(0, len(world.complicit_brokers), int(comp.sum()))]
    if preset.organised:
        # Ring members file much of their diversion through their ring's complicit broker.
        ring_broker = ~comp & ~is_vendor & (rng.random(n) < preset.ring_broker_share)
        broker[ring_broker] = world.exp_brokers[exporter[ring_broker], 1]

    bits = (flags.astype(np.int64) << np.arange(len(FLAGS))).sum(axis=1)
    return {
        "exporter": exporter, "day": day, "product": product, "hs": hs, "description": description,
        "dest": dest, "consignee": consignee, "mode": mode, "port": port, "quantity": quantity,
        "unit_value": unit_value, "payment": payment, "broker": broker, "authorised": authorised,
        "transship": ts, "typology": typology, "flags": bits,
    }  # fmt: skip


def _concat(parts: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _chunk(
    world: _World, rng: np.random.Generator, k: int, first_number: int, lying_low: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Declarations and ground truth of chunk `k` (a time window), plus raw seizure columns.

    `lying_low` (per exporter, the last pause after a seizure) carries deterrence over chunks.
    """
    lo, hi = int(world.chunk_days[k]), int(world.chunk_days[k + 1])
    n_rows = int(world.chunk_rows[k])
    rates = np.array([*(world.preset.typology_rates[name] for name in TYPOLOGY_RATES), 0.0])
    if world.drift and hi > world.mid_day:
        cdf = world.season_cdf
        late = (cdf[hi] - cdf[max(lo, world.mid_day)]) / (cdf[hi] - cdf[lo])
        rates[-1] = DRIFT_RATE * late
    counts = rng.binomial(n_rows, np.minimum(rates * DETERRENCE_OVERSAMPLE, 0.5))
    diverted = _diverted_rows(world, rng, counts, lo, hi)
    diverted["seconds"] = diverted["day"] * 86_400 + _seconds_of_day(rng, len(diverted["day"]))
    diverted |= _seizure_outcomes(world, rng, diverted["typology"], diverted["product"])
    keep = _not_deterred(world, diverted, lying_low)
    diverted = {key: value[keep] for key, value in diverted.items()}
    legit = _legit_rows(world, rng, max(n_rows - len(diverted["day"]), 0), lo, hi)
    legit["seconds"] = legit["day"] * 86_400 + _seconds_of_day(rng, len(legit["day"]))
    legit |= _seizure_outcomes(world, rng, legit["typology"], legit["product"])
    rows = _concat([legit, diverted])
    n = len(rows["day"])
    order = np.argsort(rows["seconds"], kind="stable")
    rows = {key: value[order] for key, value in rows.items()}
    seconds = rows["seconds"]
    prods = world.products

    unit = prods.unit[rows["product"]]
    quantity = np.where(
        unit == "KGM", np.round(rows["quantity"], 2), np.maximum(np.round(rows["quantity"]), 1)
    )
    quantity = np.maximum(quantity, 0.01)
    kg_per_unit = np.select([unit == "KGM", prods.form[rows["product"]] == "biological"], [1.0, 0.08], 0.035)
    gross = quantity * kg_per_unit * np.exp(rng.normal(0.08, 0.05, n)) + rng.uniform(0.2, 3.0, n)
    years_in = rows["day"] / 365.25
    value = np.round(quantity * rows["unit_value"] * (1 + 0.03 * years_in), 2)
    year = (world.start + rows["day"].astype("timedelta64[D]")).astype("datetime64[Y]").astype(int) + 1970
    auth_numbers = rng.integers(0, 1_000_000, n)
    authorisation = np.where(
        rows["authorised"],
        np.char.add(
            np.char.add(np.char.add("NC/EA/", year.astype(str)), "/"),
            np.char.zfill(auth_numbers.astype(str), 6),
        ),
        "",
    ).astype(object)
    authorisation[~rows["authorised"]] = None
    countries = world.countries.astype(object)
    dest = countries[rows["dest"]]
    ts = np.where(rows["transship"] >= 0, countries[np.maximum(rows["transship"], 0)], None)
    payment = np.where(
        rows["payment"] >= 0, np.array(PAYMENT, dtype=object)[np.maximum(rows["payment"], 0)], None
    )
    broker = np.where(
        rows["broker"] >= 0, world.broker_id.astype(object)[np.maximum(rows["broker"], 0)], None
    )
    numbers = first_number + np.arange(n)
    declaration_id = np.char.add("SB", np.char.zfill(numbers.astype(str), 8)).astype(object)
    declared_at = world.start.astype("datetime64[s]") + seconds.astype("timedelta64[s]")

    declarations = pd.DataFrame(
        {
            "declaration_id": pd.array(declaration_id, dtype="str"),
            "declared_at": declared_at.astype("datetime64[us]"),
            "exporter_id": pd.array(world.exporter_id[rows["exporter"]], dtype="str"),
            "consignee_id": pd.array(world.consignee_id[rows["consignee"]], dtype="str"),
            "consignee_country": pd.array(countries[world.consignee_country[rows["consignee"]]], dtype="str"),
            "destination_country": pd.array(dest, dtype="str"),
            "port_of_loading": pd.array(rows["port"], dtype="str"),
            "transport_mode": pd.array(rows["mode"], dtype="str"),
            "hs_code": pd.array(rows["hs"], dtype="str"),
            "goods_description": pd.array(rows["description"], dtype="str"),
            "quantity": quantity,
            "quantity_unit": pd.array(unit, dtype="str"),
            "gross_weight_kg": np.round(gross, 2),
            "declared_value_usd": value,
            "customs_broker_id": pd.array(broker, dtype="str"),
            "payment_terms": pd.array(payment, dtype="str"),
            "export_authorization_id": pd.array(authorisation, dtype="str"),
            "transshipment_country": pd.array(ts, dtype="str"),
        }
    )
    typology_names = np.array([*FLAGS, LEGITIMATE], dtype=object)
    flag_text = _flag_text(rows["flags"])
    ground_truth = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"],
            "typology": pd.array(typology_names[rows["typology"]], dtype="str"),
            "diverted": rows["typology"] >= 0,
            "red_flags": pd.array(flag_text, dtype="str"),
        }
    )
    raw = {
        "declaration_id": declaration_id, "seconds": seconds, "exporter": rows["exporter"],
        "consignee": rows["consignee"], "dest": rows["dest"], "transship": rows["transship"],
        "typology": rows["typology"], "product": rows["product"], "gross": gross, "seized": rows["seized"],
        "in_india": rows["in_india"], "lag": rows["lag"],
    }  # fmt: skip
    return declarations, ground_truth, _seizures_for_chunk(world, rng, raw)


def _seizure_outcomes(
    world: _World, rng: np.random.Generator, typology: np.ndarray, product: np.ndarray
) -> dict[str, np.ndarray]:
    """Whether each declaration is seized, where (India or abroad) and how many seconds after filing."""
    n = len(typology)
    diverted = typology >= 0
    p_seize = np.array([SEIZURE_PROBABILITY.get(t, DEFAULT_SEIZURE_PROBABILITY) for t in FLAGS])
    seized = diverted & (rng.random(n) < p_seize[np.maximum(typology, 0)])
    # Paperwork seizures of legitimate shipments (label noise), mostly controlled lines.
    controlled = world.products.controlled[product]
    seized |= ~diverted & (rng.random(n) < np.where(controlled, PAPERWORK_CONTROLLED, PAPERWORK_OTHER))
    in_india = ~diverted | (rng.random(n) < 0.35)
    lag_days = np.where(
        in_india,
        rng.exponential(3.0, n) + 0.1,
        np.where(
            rng.random(n) < 0.07, rng.uniform(181, 400, n), np.clip(rng.lognormal(np.log(30), 0.7, n), 2, 150)
        ),
    )
    return {"seized": seized, "in_india": in_india, "lag": (lag_days * 86_400).astype(np.int64)}


def _not_deterred(world: _World, rows: dict, lying_low: np.ndarray) -> np.ndarray:
    """Mask of diverted rows still shipped: after a seizure a diverter lies low for a while.

    Per exporter, the earliest seizure of a kept shipment starts a pause of `exp_cooloff`;
    shipments filed during the pause are dropped, and the next seizure after it starts the
    next pause (one pass per pause). A seizure that starts a pause always belongs to a kept
    shipment. Bold diverters never pause. `lying_low` (2 x exporters: pause start and end,
    in seconds) carries the last pause into the next chunk and is updated in place.
    """
    exporter, seconds = rows["exporter"], rows["seconds"]
    caught_at = np.where(rows["seized"] & ~world.exp_bold[exporter], seconds + rows["lag"], _NEVER)
    keep = ~((seconds >= lying_low[0, exporter]) & (seconds < lying_low[1, exporter]))
    active_from = np.maximum(lying_low[1], 0)
    while True:
        live = keep & (seconds >= active_from[exporter]) & (caught_at < _NEVER)
        if not live.any():
            return keep
        first = np.full(len(active_from), _NEVER, dtype=np.int64)
        np.minimum.at(first, exporter[live], caught_at[live])
        paused = first < _NEVER
        until = np.where(paused, first + world.exp_cooloff, active_from)
        lying_low[0, paused], lying_low[1, paused] = first[paused], until[paused]
        keep &= ~((seconds >= first[exporter]) & (seconds < until[exporter]))
        active_from = until


def _flag_text(bits: np.ndarray) -> np.ndarray:
    uniques, inverse = np.unique(bits, return_inverse=True)
    names = np.array(
        [";".join(FLAGS[i] for i in range(len(FLAGS)) if u >> i & 1) for u in uniques], dtype=object
    )
    return names[inverse]


def _seizures_for_chunk(world: _World, rng: np.random.Generator, raw: dict) -> dict[str, np.ndarray]:
    """Seizure rows (not yet sorted or numbered) for one chunk's declarations."""
    prods = world.products
    typology = raw["typology"]
    diverted = typology >= 0
    idx = np.flatnonzero(raw["seized"])
    m = len(idx)
    legit = ~diverted[idx]
    in_india = raw["in_india"][idx]
    transit = raw["transship"][idx]
    abroad_country = np.where((transit >= 0) & (rng.random(m) < 0.35), transit, raw["dest"][idx])
    in_code = world.country_index["IN"]
    country = np.where(in_india, in_code, abroad_country)
    country_code = world.countries.astype(object)[country]
    agency = _agency_for(country_code)
    agency[in_india] = np.array(INDIAN_AGENCIES, dtype=object)[rng.integers(0, 3, int(in_india.sum()))]
    agency[legit] = "CUSTOMS-SIIB"
    product = raw["product"][idx]
    substance = np.where(prods.substance[product] != "", prods.substance[product], prods.api[product])
    qty_kg = np.round(raw["gross"][idx] * rng.uniform(0.4, 1.0, m), 1)
    qty_kg[legit] = np.round(raw["gross"][idx][legit] * rng.uniform(0.01, 0.2, int(legit.sum())), 1)
    exporter = world.exporter_id[raw["exporter"][idx]].copy()
    exporter[rng.random(m) < 0.1] = None
    consignee = world.consignee_id[raw["consignee"][idx]].copy()
    consignee[rng.random(m) < 0.2] = None
    linked = {
        "seconds": raw["seconds"][idx] + raw["lag"][idx],
        "declaration_id": raw["declaration_id"][idx],
        "exporter_id": exporter,
        "consignee_id": consignee,
        "country": country_code,
        "substance": substance,
        "quantity_kg": qty_kg,
        "agency": agency,
    }

    # Intelligence seizures: name only an exporter or a consignee of diverted trade.
    div_idx = np.flatnonzero(diverted)
    k = int(round(0.12 * len(div_idx) * 0.5)) if len(div_idx) else 0
    anchor = div_idx[rng.integers(0, len(div_idx), k)] if k else np.empty(0, dtype=np.int64)
    names_exporter = rng.random(k) < 0.6
    intel_country = np.where(rng.random(k) < 0.7, in_code, raw["dest"][anchor])
    intel_code = world.countries.astype(object)[intel_country]
    intel_agency = _agency_for(intel_code)
    intel_agency[intel_country == in_code] = "NCB"
    intel = {
        "seconds": raw["seconds"][anchor] + (rng.uniform(10, 200, k) * 86_400).astype(np.int64),
        "declaration_id": np.full(k, None, dtype=object),
        "exporter_id": np.where(names_exporter, world.exporter_id[raw["exporter"][anchor]], None),
        "consignee_id": np.where(~names_exporter, world.consignee_id[raw["consignee"][anchor]], None),
        "country": intel_code,
        "substance": prods.substance[raw["product"][anchor]],
        "quantity_kg": np.round(rng.lognormal(np.log(20), 1.0, k), 1),
        "agency": intel_agency,
    }

    # Compliance findings against legitimate exporters (valuation, documentation, samples), naming
    # only the exporter: the more an exporter files, the more findings it collects.
    legit_idx = np.flatnonzero(~diverted)
    # (Controlled lines draw more findings: authorisation and quantity checks.)
    controlled = prods.controlled[raw["product"][legit_idx]]
    anchor = legit_idx[rng.random(len(legit_idx)) < np.where(controlled, 4.0, 1.0) * COMPLIANCE_FINDINGS]
    c = len(anchor)
    product = raw["product"][anchor]
    compliance = {
        "seconds": raw["seconds"][anchor] + (rng.uniform(5, 120, c) * 86_400).astype(np.int64),
        "declaration_id": np.full(c, None, dtype=object),
        "exporter_id": world.exporter_id[raw["exporter"][anchor]],
        "consignee_id": np.full(c, None, dtype=object),
        "country": np.full(c, "IN", dtype=object),
        "substance": np.where(prods.substance[product] != "", prods.substance[product], prods.api[product]),
        "quantity_kg": np.round(raw["gross"][anchor] * rng.uniform(0.01, 0.1, c), 1),
        "agency": np.where(rng.random(c) < 0.7, "CUSTOMS-SIIB", "DRI").astype(object),
    }
    return _concat([linked, intel, compliance])


def _finish_seizures(world: _World, parts: list[dict]) -> pd.DataFrame:
    raw = _concat(parts)
    end_seconds = world.n_days * 86_400
    keep = raw["seconds"] < end_seconds  # seizures after the data's end are not known yet
    raw = {k: v[keep] for k, v in raw.items()}
    order = np.lexsort((raw["declaration_id"].astype(str), raw["seconds"]))
    raw = {k: v[order] for k, v in raw.items()}
    n = len(order)
    seizure_id = np.char.add("SZ", np.char.zfill((100_001 + np.arange(n)).astype(str), 7)).astype(object)
    return pd.DataFrame(
        {
            "seizure_id": pd.array(seizure_id, dtype="str"),
            "seized_at": (
                world.start.astype("datetime64[s]") + raw["seconds"].astype("timedelta64[s]")
            ).astype("datetime64[us]"),
            "declaration_id": pd.array(raw["declaration_id"], dtype="str"),
            "exporter_id": pd.array(raw["exporter_id"], dtype="str"),
            "consignee_id": pd.array(raw["consignee_id"], dtype="str"),
            "country": pd.array(raw["country"], dtype="str"),
            "substance": pd.array(raw["substance"], dtype="str"),
            "quantity_kg": raw["quantity_kg"].astype(float),
            "agency": pd.array(raw["agency"], dtype="str"),
        }
    )


def preset_named(name: str) -> Preset:
    """The generator preset called `name` (error naming the known ones otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def _iter_history(
    rows: int, years: float, seed: int, start: str, drift: bool, progress: bool, preset: str = "default"
) -> Iterator[tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]]:
    """Yield (declarations, ground_truth, None) per chunk, then (None, None, seizures)."""
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    behaviour = preset_named(preset)
    seeds = np.random.SeedSequence(seed)
    world_seed, *chunk_seeds = seeds.spawn(1 + max(1, -(-rows // CHUNK_ROWS)))
    world = _build_world(rows, years, np.random.default_rng(world_seed), start, drift, behaviour)
    seizure_parts = []
    lying_low = np.stack([np.where(world.exp_low_until > 0, -1, _NEVER), world.exp_low_until]).astype(
        np.int64
    )
    number = 1_000_001
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=False)
        bar.start()
        task = bar.add_task("generating declarations", total=rows)
    try:
        for k in range(len(world.chunk_rows)):
            declarations, ground_truth, seizures = _chunk(
                world, np.random.default_rng(chunk_seeds[k]), k, number, lying_low
            )
            number += len(declarations)
            seizure_parts.append(seizures)
            if bar is not None:
                bar.update(task, advance=len(declarations))
            yield declarations, ground_truth, None
    finally:
        if bar is not None:
            bar.stop()
    yield None, None, _finish_seizures(world, seizure_parts)


def generate_history(
    rows: int = 200_000,
    years: float = 3.0,
    seed: int = 42,
    start: str = "2022-01-01",
    drift: bool = False,
    progress: bool = False,
    preset: str = "default",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Synthetic declarations, seizures and ground truth (declaration_id, typology, diverted, red_flags).

    `preset` names how diverters behave (`PRESETS`: "default" or "adversarial").
    """
    declarations, truths, seizures = [], [], None
    for decl, truth, seiz in _iter_history(rows, years, seed, start, drift, progress, preset):
        if decl is not None:
            declarations.append(decl)
            truths.append(truth)
        else:
            seizures = seiz
    return (
        pd.concat(declarations, ignore_index=True),
        seizures,
        pd.concat(truths, ignore_index=True),
    )


class _TableWriter:
    """Appends DataFrames to one CSV or Parquet file, deterministically."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self._parquet: pq.ParquetWriter | None = None
        self._started = False

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._parquet.write_table(table, row_group_size=CHUNK_ROWS)
        else:
            frame.to_csv(self.path, mode="a" if self._started else "w", header=not self._started, index=False,
                         date_format="%Y-%m-%dT%H:%M:%S", lineterminator="\n")  # fmt: skip
        self._started = True

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def write_history(
    out_dir: Path, rows: int, years: float, seed: int, fmt: str, drift: bool = False, preset: str = "default"
) -> None:
    """Write declarations.<fmt>, seizures.<fmt> and ground_truth.<fmt> to `out_dir`; print a summary."""
    from rich.console import Console

    fmt = fmt.lower()
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    decl_writer = _TableWriter(out_dir / f"declarations.{fmt}", fmt)
    truth_writer = _TableWriter(out_dir / f"ground_truth.{fmt}", fmt)
    n_rows = n_diverted = 0
    first = last = None
    seizures = None
    try:
        for decl, truth, seiz in _iter_history(rows, years, seed, "2022-01-01", drift, True, preset):
            if decl is None:
                seizures = seiz
                continue
            decl_writer.write(decl)
            truth_writer.write(truth)
            n_rows += len(decl)
            n_diverted += int(truth["diverted"].sum())
            first = decl["declared_at"].iloc[0] if first is None else first
            last = decl["declared_at"].iloc[-1]
    finally:
        decl_writer.close()
        truth_writer.close()
    seizure_writer = _TableWriter(out_dir / f"seizures.{fmt}", fmt)
    seizure_writer.write(seizures)
    seizure_writer.close()
    linked = int(seizures["declaration_id"].notna().sum())
    Console().print(
        f"[bold]{n_rows:,}[/] declarations ({first:%Y-%m-%d} to {last:%Y-%m-%d}), "
        f"{n_diverted:,} diverted ({n_diverted / n_rows:.2%}); {len(seizures):,} seizures "
        f"({linked:,} tied to a declaration, {len(seizures) - linked:,} intelligence-only); "
        f"written to {out_dir} in {time.perf_counter() - began:.1f} s"
    )
