"""Test subscribers of the sandbox, in the shape of Telenor's Mobile User/Device Info APIs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Subscriber:
    msisdn: str
    user: dict[str, Any]
    device: dict[str, Any]


def _sub(msisdn: str, user: dict[str, Any], device: dict[str, Any]) -> tuple[str, Subscriber]:
    return msisdn, Subscriber(msisdn, {"mobileNumber": msisdn, **user}, device)


SUBSCRIBERS: dict[str, Subscriber] = dict(
    [
        _sub(
            "4790000001",
            {
                "name": {"givenName": "Kari", "familyName": "Nordmann"},
                "address": {
                    "streetName": "Storgata",
                    "houseNumber": "12",
                    "houseLetter": "B",
                    "postalCode": "0155",
                    "postalPlace": "Oslo",
                    "countryCode": "NO",
                },
                "birthDate": "1985-03-14",
                "emailAddress": "kari.nordmann@example.no",
            },
            {
                "model": "iPhone 15",
                "manufacturer": "Apple",
                "tac": "35467912",
                "capabilities": {"hdVoice": True, "lte": True, "lteAdvanced": True},
            },
        ),
        _sub(
            "4790000002",
            {
                "name": {"givenName": "Ola", "middleName": "Johan", "familyName": "Hansen"},
                "address": {
                    "streetName": "Bryggen",
                    "houseNumber": "3",
                    "postalCode": "5003",
                    "postalPlace": "Bergen",
                    "countryCode": "NO",
                },
                "birthDate": "1972-11-02",
                "emailAddress": "ola.hansen@example.no",
            },
            {
                "model": "Galaxy S24",
                "manufacturer": "Samsung",
                "tac": "35291011",
                "capabilities": {"hdVoice": True, "lte": True, "lteAdvanced": False},
            },
        ),
        _sub(
            "4790000003",
            {
                "name": {"givenName": "Åse", "familyName": "Bjørnstad"},
                "address": {
                    "streetName": "Kongens gate",
                    "houseNumber": "7",
                    "postalCode": "7011",
                    "postalPlace": "Trondheim",
                    "countryCode": "NO",
                },
                "birthDate": "1999-06-30",
                "emailAddress": "ase.bjornstad@example.no",
            },
            # An older phone: the network does not know its LTE-Advanced support, so it is omitted.
            {
                "model": "Nokia 3310 4G",
                "manufacturer": "HMD Global",
                "tac": "35888810",
                "capabilities": {"hdVoice": False, "lte": True},
            },
        ),
        _sub(
            "4790000004",
            # Optional fields missing: no e-mail, no birth date, no street letter.
            {
                "name": {"givenName": "Per", "familyName": "Ødegård"},
                "address": {
                    "streetName": "Strandveien",
                    "houseNumber": "101",
                    "postalCode": "9008",
                    "postalPlace": "Tromsø",
                    "countryCode": "NO",
                },
            },
            {"model": "Pixel 8", "manufacturer": "Google", "tac": "35330811", "capabilities": {}},
        ),
    ]
)
