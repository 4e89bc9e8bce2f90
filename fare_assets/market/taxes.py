"""Ticket taxes, fees and carrier surcharges per passenger, with their real codes and amounts in US cents.

Government taxes follow the rules travellers see on real tickets: US taxes per enplanement with
per-journey caps (AY, XF), the US segment tax on domestic segments (ZP), the 7.5% US transportation
tax on domestic fares (US), arrival and departure taxes on international trips (US, YC, XY, XA), and a
departure charge in the country of each slice's origin (GB/UB, FR/QX/IZ, DE/OY/RA, ...). Carriers that
file a surcharge (YQ/YR) add one per mile on international slices.
"""
from dataclasses import dataclass

from fare_assets.market.network import Journey
from fare_assets.market.reference import AIRLINES, US_COUNTRIES, airport

GOVERNMENT = "GOVERNMENT"
CARRIER_SURCHARGE = "CARRIER_SURCHARGE"

US_TRANSPORTATION_TAX_RATE = 0.075
SECURITY_FEE_CENTS = 560
FACILITY_CHARGE_CENTS = 450
SEGMENT_TAX_CENTS = 520
# The US caps the security fee and facility charges at two enplanements per one-way journey.
PER_JOURNEY_ENPLANEMENT_CAP = 2
UK_LONG_HAUL_MILES = 2000
PREMIUM_CABINS = frozenset({"PREMIUM_COACH", "BUSINESS", "FIRST"})


@dataclass(frozen=True)
class Tax:
    """One tax line of a passenger's price."""

    code: str
    tax_id: str
    name: str
    country: str | None
    charge_type: str
    amount_cents: int


# Charges collected when a slice departs from a country: (code, id, name, US cents).
DEPARTURE_CHARGES: dict[str, tuple[tuple[str, str, str, int], ...]] = {
    "GB": (("UB", "UB", "United Kingdom Passenger Service Charge", 5520),),
    "FR": (
        ("FR", "FR_001", "France Civil Aviation Tax Domestic And International", 510),
        ("QX", "QX_001", "France Passenger Service Charge International", 2840),
        ("IZ", "IZ_001", "France Air Passenger Solidarity Tax", 790),
    ),
    "DE": (
        ("DE", "DE_001", "Germany Airport Security Charge", 1040),
        ("OY", "OY_001", "Germany Air Transport Tax", 1690),
        ("RA", "RA_001", "Germany Airport Service Charge", 2950),
    ),
    "NL": (
        ("CJ", "CJ_001", "Netherlands Security Service Charge", 1310),
        ("RN", "RN_001", "Netherlands Passenger Service Charge", 2240),
    ),
    "ES": (
        ("JD", "JD_001", "Spain JD", 1620),
        ("OG", "OG_001", "Spain OG", 70),
        ("QV", "QV_001", "Spain QV", 820),
    ),
    "PT": (
        ("PT", "PT_001", "Portugal Security Tax", 310),
        ("YP", "YP_003", "Portugal Passenger Service Charge", 2530),
    ),
    "IT": (
        ("IT", "IT_001", "Italy Embarkation Tax", 1480),
        ("HB", "HB_001", "Italy Council City Tax", 820),
        ("MJ", "MJ_001", "Italy Passenger Service Charge Departure", 1030),
        ("VT", "VT_001", "Italy Security Charge", 210),
    ),
    "TR": (("TR", "TR_001", "Turkey Airport Service Charge International", 2000),),
    "CA": (
        ("CA", "CA_001", "Canada Air Travellers Security Charge", 1910),
        ("SQ", "SQ", "Canada Airport Improvement Fee", 2480),
    ),
    "JP": (
        ("SW", "SW_001", "Japan Passenger Service Facilities Charge International", 1760),
        ("OI", "OI_001", "Japan Passenger Security Service Charge", 370),
    ),
    "AE": (("F6", "F6_002", "United Arab Emirates Passenger Facilities Charge", 2040),),
    "IN": (
        ("IN", "IN_001", "Indian User Development Fee", 760),
        ("WO", "WO_001", "Indian Passenger Service Fee", 290),
    ),
    "AU": (("AU", "AU_001", "Australia Passenger Movement Charge", 4470),),
    "KR": (("BP", "BP_001", "South Korea International Psc Departure Tax And Global Disease Eradication Fund", 2390),),
    "CN": (("CN", "CN_001", "China Airport Fee", 1320),),
    "TW": (("TW", "TW_001", "Taiwan Airport Service Charge International", 1510),),
    "LB": (("LB", "LB_001", "Lebanon Beirut Airport Embarkation Tax International", 5000),),
}
# Anywhere else a generic airport charge under the country's own code, as many countries file it.
GENERIC_DEPARTURE_CHARGE_CENTS = 1500


def _uk_air_passenger_duty(miles: int, cabin: str) -> Tax:
    """UK APD is banded by distance and doubled or more in premium cabins."""
    long_haul = miles > UK_LONG_HAUL_MILES
    if cabin in PREMIUM_CABINS:
        cents = 24300 if long_haul else 3450
    else:
        cents = 11060 if long_haul else 1690
    return Tax("GB", "GB_001", "United Kingdom Air Passengers Duty", "GB", GOVERNMENT, cents)


def _departure_charges(country: str, miles: int, cabin: str) -> list[Tax]:
    charges = DEPARTURE_CHARGES.get(country)
    if charges is None:
        return [Tax(country, f"{country}_001", f"{country} Airport Departure Charge", country, GOVERNMENT,
                    GENERIC_DEPARTURE_CHARGE_CENTS)]
    taxes = [Tax(code, tax_id, name, country, GOVERNMENT, cents) for code, tax_id, name, cents in charges]
    if country == "GB":
        taxes.append(_uk_air_passenger_duty(miles, cabin))
    return taxes


def transportation_tax(base_cents: int) -> Tax:
    """The US transportation tax on a domestic fare component: the only tax that depends on the fare."""
    return Tax("US", "US_001", "US Transportation Tax", "US", GOVERNMENT, round(base_cents * US_TRANSPORTATION_TAX_RATE))


def slice_taxes(journey: Journey, cabin: str, surcharge_cents_per_mile: float) -> tuple[Tax, ...]:
    """The fare-independent taxes and surcharges one passenger pays for one slice."""
    taxes: list[Tax] = []
    flights = journey.flights
    origin = airport(flights[0].legs[0].origin)
    destination = airport(flights[-1].legs[-1].destination)
    slice_miles = sum(leg.mileage for flight in flights for leg in flight.legs)
    us_enplanements = 0
    domestic_segments = 0
    for flight in flights:
        leg_origin = airport(flight.legs[0].origin)
        leg_destination = airport(flight.legs[-1].destination)
        if leg_origin.country in US_COUNTRIES:
            us_enplanements += 1
            if leg_destination.country in US_COUNTRIES:
                domestic_segments += 1
    capped = min(us_enplanements, PER_JOURNEY_ENPLANEMENT_CAP)
    if domestic_segments:
        taxes.append(Tax("ZP", "ZP", "US Flight Segment Tax", "US", GOVERNMENT, SEGMENT_TAX_CENTS * domestic_segments))
    if capped:
        taxes.append(Tax("AY", "AY_001", "US September 11th Security Fee", "US", GOVERNMENT, SECURITY_FEE_CENTS * capped))
    leaves_us = origin.country in US_COUNTRIES and destination.country not in US_COUNTRIES
    enters_us = destination.country in US_COUNTRIES and origin.country not in US_COUNTRIES
    if leaves_us:
        taxes.append(Tax("US", "US_002", "US International Departure Tax", "US", GOVERNMENT, 2290))
    if enters_us:
        taxes.extend((
            Tax("US", "US_003", "US International Arrival Tax", "US", GOVERNMENT, 2290),
            Tax("YC", "YC", "US Customs Fee", "US", GOVERNMENT, 714),
            Tax("XY", "XY", "US Immigration Fee", "US", GOVERNMENT, 700),
            Tax("XA", "XA", "USDA APHIS Fee", "US", GOVERNMENT, 396),
        ))
    if origin.country not in US_COUNTRIES:
        taxes.extend(_departure_charges(origin.country, slice_miles, cabin))
    if capped:
        taxes.append(Tax("XF", "XF", "US Passenger Facility Charge", "US", GOVERNMENT, FACILITY_CHARGE_CENTS * capped))
    airline = AIRLINES[journey.routing.carrier]
    if airline.surcharge_code and origin.country != destination.country:
        code = airline.surcharge_code
        taxes.append(Tax(code, f"{code}_F", f"{airline.code} {code} surcharge", None, CARRIER_SURCHARGE,
                         round(slice_miles * surcharge_cents_per_mile)))
    return tuple(taxes)
