"""Static facts of the simulated market: real airports, airlines, aircraft and metropolitan city codes."""
import math
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import airportsdata

EARTH_RADIUS_MILES = 3958.8


@dataclass(frozen=True)
class Airport:
    """An airport from airportsdata, with the metropolitan city code fares are priced to."""

    code: str
    name: str
    city_code: str
    city_name: str
    country: str
    lat: float
    lon: float
    tz: ZoneInfo
    # Named "International" or a hub: a gateway foreign airlines fly to from their hubs.
    gateway: bool


@dataclass(frozen=True)
class Airline:
    """A real airline: where it is based, where it flies from, how it prices and what it flies."""

    code: str
    name: str
    countries: tuple[str, ...]
    hubs: tuple[str, ...]
    # Its fares relative to the market (legacy carriers 1.0, low-cost carriers below).
    price_level: float
    low_cost: bool
    # Carrier-imposed surcharge on international fares ("YQ" or "YR"), or None when it files none.
    surcharge_code: str | None
    narrowbody: tuple[str, ...]
    widebody: tuple[str, ...]
    # The regional partner that flies its short spoke routes, disclosed on the leg as real codeshares are.
    regional_operator: str | None = None


AIRLINES: dict[str, Airline] = {
    a.code: a
    for a in (
        Airline("AA", "American Airlines Inc.", ("US",), ("DFW", "ORD", "MIA", "CLT", "PHX", "PHL", "LAX", "JFK"),
                1.0, False, "YQ", ("738", "321", "319", "32Q"), ("77W", "789", "772"),
                "OPERATED BY ENVOY AIR AS AMERICAN EAGLE"),
        Airline("UA", "United Airlines, Inc.", ("US",), ("ORD", "DEN", "SFO", "EWR", "IAH", "IAD", "LAX"),
                1.02, False, "YQ", ("739", "320", "738", "752"), ("77W", "789", "772"),
                "OPERATED BY SKYWEST DBA UNITED EXPRESS"),
        Airline("DL", "Delta Air Lines Inc.", ("US",), ("ATL", "JFK", "MSP", "DTW", "SLC", "SEA", "LAX", "BOS"),
                1.04, False, "YQ", ("739", "321", "320", "752"), ("333", "359", "763"),
                "OPERATED BY ENDEAVOR AIR DBA DELTA CONNECTION"),
        Airline("B6", "JetBlue Airways Corporation", ("US",), ("JFK", "BOS", "FLL"),
                0.9, False, None, ("320", "321", "E90"), ()),
        Airline("WN", "Southwest Airlines Co.", ("US",), ("DAL", "MDW", "BWI", "LAS", "DEN", "HOU", "PHX"),
                0.86, True, None, ("73H", "7M8", "73W"), ()),
        Airline("AS", "Alaska Airlines Inc.", ("US",), ("SEA", "PDX", "SFO", "LAX", "ANC"),
                0.95, False, None, ("739", "73H", "E75"), ()),
        Airline("F9", "Frontier Airlines, Inc.", ("US",), ("DEN", "MCO", "LAS"),
                0.74, True, None, ("32N", "320", "321"), ()),
        Airline("NK", "Spirit Airlines", ("US",), ("FLL", "LAS", "DTW"),
                0.72, True, None, ("32N", "320", "319"), ()),
        Airline("AC", "Air Canada", ("CA",), ("YYZ", "YUL", "YVR"),
                1.03, False, "YQ", ("320", "7M8", "223"), ("77W", "789", "333"),
                "OPERATED BY AIR CANADA EXPRESS - JAZZ"),
        Airline("AM", "Aeromexico", ("MX",), ("MEX",),
                0.95, False, "YQ", ("738", "7M8", "E90"), ("789", "788")),
        Airline("BA", "British Airways p.l.c.", ("GB",), ("LHR", "LGW"),
                1.08, False, "YQ", ("320", "321", "319"), ("77W", "789", "388", "772")),
        Airline("VS", "Virgin Atlantic Airways Ltd.", ("GB",), ("LHR",),
                1.04, False, "YQ", (), ("789", "351", "333")),
        Airline("LH", "Lufthansa", ("DE",), ("FRA", "MUC"),
                1.07, False, "YQ", ("32N", "321", "320"), ("748", "359", "333")),
        Airline("AF", "Air France", ("FR",), ("CDG",),
                1.05, False, "YQ", ("320", "321", "223"), ("77W", "359", "772")),
        Airline("KL", "KLM Royal Dutch Airlines", ("NL",), ("AMS",),
                1.03, False, "YQ", ("73H", "739", "E90"), ("77W", "789", "333")),
        Airline("IB", "Iberia", ("ES",), ("MAD",),
                0.98, False, "YQ", ("320", "321", "32N"), ("359", "333")),
        Airline("TP", "TAP Portugal", ("PT",), ("LIS",),
                0.96, False, "YR", ("320", "32N", "319"), ("339", "332")),
        Airline("AZ", "ITA Airways", ("IT",), ("FCO",),
                0.99, False, "YR", ("320", "32N", "319"), ("359", "332")),
        Airline("LX", "Swiss International Air Lines", ("CH",), ("ZRH",),
                1.1, False, "YQ", ("223", "221", "32N"), ("77W", "333")),
        Airline("SK", "SAS Scandinavian Airlines", ("DK", "SE", "NO"), ("CPH", "ARN", "OSL"),
                1.0, False, "YQ", ("32N", "320", "CR9"), ("333", "359")),
        Airline("FR", "Ryanair", ("IE", "GB", "ES", "IT"), ("DUB", "STN", "BGY"),
                0.62, True, None, ("73H", "7M8"), ()),
        Airline("U2", "easyJet", ("GB", "FR", "CH"), ("LGW", "LTN", "GVA"),
                0.7, True, None, ("319", "320", "32N"), ()),
        Airline("TK", "Turkish Airlines Inc.", ("TR",), ("IST",),
                0.94, False, "YR", ("32B", "321", "738"), ("77W", "333", "789")),
        Airline("EK", "Emirates", ("AE",), ("DXB",),
                1.05, False, "YQ", (), ("77W", "388")),
        Airline("QR", "Qatar Airways", ("QA",), ("DOH",),
                1.04, False, "YQ", ("320", "32N"), ("359", "77W", "788")),
        Airline("QF", "Qantas Airways Ltd.", ("AU",), ("SYD", "MEL"),
                1.06, False, "YQ", ("73H", "717"), ("789", "388", "332")),
        Airline("NH", "All Nippon Airways", ("JP",), ("HND", "NRT"),
                1.05, False, "YQ", ("738", "321"), ("77W", "789", "788")),
        Airline("JL", "Japan Airlines", ("JP",), ("HND", "NRT"),
                1.04, False, "YQ", ("738", "E90"), ("77W", "789", "359")),
        Airline("SQ", "Singapore Airlines", ("SG",), ("SIN",),
                1.08, False, "YQ", ("7M8",), ("359", "388", "77W")),
        Airline("CX", "Cathay Pacific Airways", ("HK",), ("HKG",),
                1.06, False, "YQ", ("32N", "321"), ("77W", "359", "333")),
        Airline("AI", "Air India", ("IN",), ("DEL", "BOM"),
                0.9, False, "YR", ("32N", "320"), ("77W", "788")),
        Airline("LA", "LATAM Airlines Group", ("CL", "BR", "PE"), ("SCL", "GRU", "LIM"),
                0.97, False, "YQ", ("320", "321"), ("789", "763")),
    )
}

# Mainline aircraft seats, used to turn load factors into seats left per booking class.
AIRCRAFT: dict[str, tuple[str, int]] = {
    "319": ("Airbus A319", 128),
    "320": ("Airbus A320", 150),
    "32N": ("Airbus A320neo", 165),
    "321": ("Airbus A321", 190),
    "32B": ("Airbus A321 (Sharklets)", 190),
    "32Q": ("Airbus A321neo", 196),
    "221": ("Airbus A220-100", 125),
    "223": ("Airbus A220-300", 145),
    "332": ("Airbus A330-200", 250),
    "333": ("Airbus A330-300", 290),
    "339": ("Airbus A330-900neo", 298),
    "351": ("Airbus A350-1000", 335),
    "359": ("Airbus A350-900", 300),
    "388": ("Airbus A380-800", 500),
    "717": ("Boeing 717", 110),
    "738": ("Boeing 737-800", 160),
    "739": ("Boeing 737-900", 179),
    "73H": ("Boeing 737-800 (Winglets)", 166),
    "73W": ("Boeing 737-700 (Winglets)", 143),
    "7M8": ("Boeing 737 MAX 8", 172),
    "748": ("Boeing 747-8", 364),
    "752": ("Boeing 757-200", 176),
    "763": ("Boeing 767-300", 211),
    "772": ("Boeing 777-200", 300),
    "77W": ("Boeing 777-300ER", 350),
    "788": ("Boeing 787-8", 240),
    "789": ("Boeing 787-9", 290),
    "CR9": ("Canadair Regional Jet 900", 76),
    "E75": ("Embraer 175", 76),
    "E90": ("Embraer 190", 100),
}
REGIONAL_AIRCRAFT = ("E75", "CR9")

# Airports that share a metropolitan fare city (fares are priced city to city: NYC, LON, PAR, ...).
METRO_CITIES: dict[str, tuple[str, str]] = {
    **{code: ("NYC", "New York") for code in ("JFK", "LGA")},
    **{code: ("CHI", "Chicago") for code in ("ORD", "MDW")},
    **{code: ("WAS", "Washington") for code in ("IAD", "DCA", "BWI")},
    **{code: ("HOU", "Houston") for code in ("IAH", "HOU")},
    **{code: ("DFW", "Dallas/Fort Worth") for code in ("DFW", "DAL")},
    **{code: ("YTO", "Toronto") for code in ("YYZ", "YTZ")},
    **{code: ("YMQ", "Montreal") for code in ("YUL",)},
    **{code: ("LON", "London") for code in ("LHR", "LGW", "STN", "LTN", "LCY")},
    **{code: ("PAR", "Paris") for code in ("CDG",)},
    **{code: ("BER", "Berlin") for code in ("BER", "TXL", "SXF")},
    **{code: ("MIL", "Milan") for code in ("MXP", "LIN", "BGY")},
    **{code: ("ROM", "Rome") for code in ("FCO", "CIA")},
    **{code: ("STO", "Stockholm") for code in ("ARN", "BMA")},
    **{code: ("MOW", "Moscow") for code in ("SVO", "DME", "VKO")},
    **{code: ("TYO", "Tokyo") for code in ("HND", "NRT")},
    **{code: ("SEL", "Seoul") for code in ("ICN", "GMP")},
    **{code: ("BJS", "Beijing") for code in ("PEK", "PKX")},
    **{code: ("SHA", "Shanghai") for code in ("PVG", "SHA")},
    **{code: ("SAO", "Sao Paulo") for code in ("GRU", "CGH")},
    **{code: ("RIO", "Rio De Janeiro") for code in ("GIG", "SDU")},
    **{code: ("BUE", "Buenos Aires") for code in ("EZE", "AEP")},
}

HUB_AIRPORTS = frozenset(hub for airline in AIRLINES.values() for hub in airline.hubs)
# US territories count as US for domestic taxes and "national" trips.
US_COUNTRIES = frozenset({"US", "PR", "VI", "GU"})


@lru_cache(maxsize=1)
def _airports_by_iata() -> dict:
    return airportsdata.load("IATA")


def _display_name(name: str) -> str:
    """QPX names airports without the trailing word "Airport" ("Chicago O'Hare International")."""
    return name[: -len(" Airport")] if name.endswith(" Airport") else name


@lru_cache(maxsize=None)
def airport(code: str) -> Airport | None:
    """The airport with this IATA code, or None when airportsdata does not know it."""
    row = _airports_by_iata().get(code)
    if row is None or not row.get("tz"):
        return None
    city_code, city_name = METRO_CITIES.get(code, (code, row["city"] or row["name"]))
    return Airport(
        code=code,
        name=_display_name(row["name"]),
        city_code=city_code,
        city_name=city_name,
        country=row["country"],
        lat=float(row["lat"]),
        lon=float(row["lon"]),
        tz=ZoneInfo(row["tz"]),
        gateway=code in HUB_AIRPORTS or "International" in row["name"],
    )


@lru_cache(maxsize=None)
def miles_between(origin: str, destination: str) -> int:
    """Great-circle distance in statute miles (haversine), as QPX reports leg mileage."""
    a, b = airport(origin), airport(destination)
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return round(2 * EARTH_RADIUS_MILES * math.asin(math.sqrt(h)))
