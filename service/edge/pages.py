"""The error page of the browser flows, in Norwegian (default) and English.

It says what happened, what it means for *this* app (by its display name), and offers "Try
again" (a fresh login) and "Back to the app" (the return URL with `?error=<code>`).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..auth.flow import START_PARAMS
from ..kit.errors import BffError
from ..kit.urls import with_query

# code -> language -> (title, what happened, what it means for {app})
TEXTS: dict[str, dict[str, tuple[str, str, str]]] = {
    "access_denied": {
        "nb": (
            "Du avslo forespørselen",
            "Du valgte å ikke dele opplysningene dine fra Telenor.",
            "{app} har ikke fått noen opplysninger om deg. Du kan fylle ut selv, "
            "eller prøve igjen hvis du ombestemmer deg.",
        ),
        "en": (
            "You declined the request",
            "You chose not to share your details from Telenor.",
            "{app} has received nothing about you. You can fill in the details yourself, "
            "or try again if you change your mind.",
        ),
    },
    "telenor_error": {
        "nb": (
            "Telenor kunne ikke fullføre innloggingen",
            "Telenor svarte med en feil, og vi fikk ikke bekreftet hvem du er.",
            "{app} har ikke fått opplysningene dine. Prøv igjen om litt.",
        ),
        "en": (
            "Telenor could not complete the sign-in",
            "Telenor answered with an error, so we could not confirm who you are.",
            "{app} has not received your details. Please try again in a moment.",
        ),
    },
    "login_expired": {
        "nb": (
            "Innloggingen er utløpt eller allerede brukt",
            "Denne innloggingslenken er for gammel, eller den er brukt før.",
            "Har du nettopp logget inn i {app}, er du fortsatt logget inn. Ellers: start "
            "innloggingen på nytt.",
        ),
        "en": (
            "The sign-in has expired or was already used",
            "This sign-in link is too old, or it has been used before.",
            "If you have just signed in to {app}, you still are. Otherwise, please start the "
            "sign-in again.",
        ),
    },
    "wrong_app": {
        "nb": (
            "Innloggingen hører til en annen tjeneste",
            "Svaret fra Telenor gjaldt ikke denne tjenesten.",
            "Innloggingen i {app} ble ikke fullført. Start den på nytt herfra.",
        ),
        "en": (
            "The sign-in belongs to another service",
            "The answer from Telenor was not for this service.",
            "This sign-in to {app} did not complete. Please start it again from here.",
        ),
    },
    "wrong_browser": {
        "nb": (
            "Innloggingen ble startet i en annen nettleser",
            "Av sikkerhetshensyn må innloggingen fullføres i samme nettleser som den ble "
            "startet i.",
            "Innloggingen i {app} ble ikke fullført. Start den på nytt i denne nettleseren.",
        ),
        "en": (
            "The sign-in was started in another browser",
            "For your security, a sign-in must finish in the same browser it started in.",
            "This sign-in to {app} did not complete. Please start it again in this browser.",
        ),
    },
    "telenor_unavailable": {
        "nb": (
            "Telenor svarer ikke akkurat nå",
            "Vi fikk ikke kontakt med Telenor for å fullføre innloggingen.",
            "{app} har ikke fått opplysningene dine. Prøv igjen om litt.",
        ),
        "en": (
            "Telenor is not answering right now",
            "We could not reach Telenor to complete the sign-in.",
            "{app} has not received your details. Please try again in a moment.",
        ),
    },
    "token_rejected": {
        "nb": (
            "Telenor godtok ikke innloggingen",
            "Telenor avviste innloggingen da vi skulle fullføre den.",
            "Innloggingen i {app} ble ikke fullført. Start den på nytt.",
        ),
        "en": (
            "Telenor did not accept the sign-in",
            "Telenor rejected the sign-in when we tried to complete it.",
            "This sign-in to {app} did not complete. Please start it again.",
        ),
    },
    "bad_callback": {
        "nb": (
            "Svaret fra Telenor var ufullstendig",
            "Innloggingen kom tilbake uten det vi trenger for å fullføre den.",
            "Innloggingen i {app} ble ikke fullført. Start den på nytt.",
        ),
        "en": (
            "The answer from Telenor was incomplete",
            "The sign-in came back without what we need to complete it.",
            "This sign-in to {app} did not complete. Please start it again.",
        ),
    },
    "unknown_app": {
        "nb": (
            "Ukjent tjeneste",
            "Lenken du fulgte peker til en tjeneste som ikke finnes her.",
            "Ingen innlogging ble startet. Gå tilbake dit du kom fra.",
        ),
        "en": (
            "Unknown service",
            "The link you followed points to a service that does not exist here.",
            "No sign-in was started. Please go back to where you came from.",
        ),
    },
    "bad_return_to": {
        "nb": (
            "Ugyldig returadresse",
            "Innloggingen ba om å sende deg videre til en adresse som ikke er godkjent.",
            "Av sikkerhetshensyn ble ingen innlogging startet for {app}.",
        ),
        "en": (
            "Return address not allowed",
            "The sign-in asked to send you on to an address that is not approved.",
            "For your security, no sign-in was started for {app}.",
        ),
    },
    "challenge_required": {
        "nb": (
            "Appen sendte en ufullstendig forespørsel",
            "Innlogging fra en mobilapp krever en PKCE-utfordring (S256).",
            "Ingen innlogging ble startet for {app}. Appen må oppdateres.",
        ),
        "en": (
            "The app sent an incomplete request",
            "Signing in from a mobile app needs a PKCE challenge (S256).",
            "No sign-in was started for {app}. The app needs to be updated.",
        ),
    },
    "bad_redirect_uri": {
        "nb": (
            "Appen oppga en ukjent returadresse",
            "Appen ba om å få innloggingen sendt til en adresse som ikke er registrert for den.",
            "Av hensyn til sikkerheten din ble ingen innlogging startet for {app}, og du blir "
            "ikke sendt videre. Appen må oppdateres.",
        ),
        "en": (
            "The app gave an unknown return address",
            "The app asked for the sign-in to be sent to an address not registered for it.",
            "For your security, no sign-in was started for {app}, and you are not sent on. "
            "The app needs to be updated.",
        ),
    },
    "bad_client": {
        "nb": (
            "Appen oppga feil klient-id",
            "Forespørselen kom med en client_id som ikke hører til denne appen.",
            "Ingen innlogging ble startet for {app}, og du blir ikke sendt videre.",
        ),
        "en": (
            "The app gave the wrong client id",
            "The request came with a client_id that does not belong to this app.",
            "No sign-in was started for {app}, and you are not sent on.",
        ),
    },
    "store_unavailable": {
        "nb": (
            "Midlertidig utilgjengelig",
            "Tjenesten kan ikke lagre innloggingen akkurat nå.",
            "Innloggingen i {app} ble ikke fullført; er du allerede logget inn, er du "
            "fortsatt det. Prøv igjen om litt.",
        ),
        "en": (
            "Temporarily unavailable",
            "The service cannot store the sign-in right now.",
            "This sign-in to {app} did not go through; if you were already signed in, you "
            "still are. Please try again in a moment.",
        ),
    },
    "overloaded": {
        "nb": (
            "Tjenesten er travel",
            "Akkurat nå kommer det flere forespørsler enn tjenesten rekker å svare på.",
            "Innloggingen i {app} ble ikke fullført; er du allerede logget inn, er du "
            "fortsatt det. Prøv igjen om et øyeblikk.",
        ),
        "en": (
            "The service is busy",
            "More requests are arriving right now than the service can answer.",
            "This sign-in to {app} did not go through; if you were already signed in, you "
            "still are. Please try again in a moment.",
        ),
    },
    "rate_limited": {
        "nb": (
            "For mange forsøk",
            "Det er startet for mange innlogginger herfra på kort tid.",
            "Vent litt før du prøver å logge inn i {app} igjen.",
        ),
        "en": (
            "Too many attempts",
            "Too many sign-ins were started from here in a short time.",
            "Please wait a little before signing in to {app} again.",
        ),
    },
    "busy": {
        "nb": (
            "Mange logger inn akkurat nå",
            "Det startes flere innlogginger enn tjenesten tar imot akkurat nå.",
            "Du har ikke gjort noe galt. Prøv å logge inn i {app} igjen om et minutt.",
        ),
        "en": (
            "Many people are signing in right now",
            "More sign-ins are being started than the service accepts right now.",
            "You did nothing wrong. Please try signing in to {app} again in a minute.",
        ),
    },
    "not_found": {
        "nb": ("Siden finnes ikke", "Adressen du fulgte finnes ikke.", "Gå tilbake til {app}."),
        "en": ("Page not found", "The address you followed does not exist.", "Go back to {app}."),
    },
    # For the codes without a page of their own: a request we could not use, or our fault.
    "bad_request": {
        "nb": (
            "Forespørselen kunne ikke brukes",
            "Lenken du fulgte mangler noe, eller har noe den ikke skal ha.",
            "Ingen innlogging ble startet for {app}. Gå tilbake og prøv igjen.",
        ),
        "en": (
            "The request could not be used",
            "The link you followed lacks something, or has something it should not.",
            "No sign-in was started for {app}. Please go back and try again.",
        ),
    },
    "internal": {
        "nb": (
            "Noe gikk galt hos oss",
            "Tjenesten møtte en feil den ikke var forberedt på.",
            "Innloggingen i {app} ble ikke fullført. Prøv igjen om litt.",
        ),
        "en": (
            "Something went wrong on our side",
            "The service met an error it was not prepared for.",
            "This sign-in to {app} did not complete. Please try again in a moment.",
        ),
    },
}
UI = {
    "nb": {
        "retry": "Prøv igjen",
        "back": "Tilbake til appen",
        "code_label": "Feilkode",
        "switch": "English",
    },
    "en": {
        "retry": "Try again",
        "back": "Back to the app",
        "code_label": "Error code",
        "switch": "Norsk",
    },
}
CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def language(request: Request) -> str:
    """`?lang=` wins; else the first nb/nn/no or en in Accept-Language; else Norwegian."""
    lang = request.query_params.get("lang", "")
    if lang in UI:
        return lang
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith(("nb", "nn", "no")):
            return "nb"
        if tag.startswith("en"):
            return "en"
    return "nb"


class Pages:
    """Renders the error page; the Jinja environment is built once."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=FileSystemLoader(Path(__file__).parents[1] / "templates"),
            autoescape=select_autoescape(default=True),
        )
        self._template = self._env.get_template("error.html")

    def error(self, request: Request, error: BffError) -> HTMLResponse:
        lang = language(request)
        status = error.status or 500
        code = error.code if error.code in TEXTS else "internal" if status >= 500 else "bad_request"
        flow = error.flow
        app_name = flow.display_name if flow else ("appen" if lang == "nb" else "the app")
        title, what, meaning = TEXTS[code][lang]
        retry_url = back_url = None
        unsent = code in ("unknown_app", "bad_return_to", "bad_client", "bad_redirect_uri")
        if flow and flow.mode == "cookie" and not unsent:
            params = {"mode": flow.mode}
            if flow.return_to:
                params["return_to"] = flow.return_to
            retry_url = f"/auth/{flow.app}/login?{urlencode(params)}"
        if flow and flow.return_to and flow.mode == "cookie" and not unsent:
            back_url = with_query(flow.return_to, error=error.code)
        other = "en" if lang == "nb" else "nb"
        # The switch link keeps only harmless parameters: never a callback's code or state.
        query = {k: v for k, v in request.query_params.items() if k in START_PARAMS}
        query["lang"] = other
        if request.url.path.endswith(("/callback", "/error")):
            # The callback's own URL carries a spent code and state: the switch shows the same
            # page again by its code instead (`/auth/{app}/error`), never with them.
            switch_url = None
            if flow is not None:
                again = {"code": error.code, "lang": other}
                if flow.return_to:
                    again["return_to"] = flow.return_to
                switch_url = f"/auth/{flow.app}/error?{urlencode(again)}"
        else:
            switch_url = f"{request.url.path}?{urlencode(query)}"
        nonce = secrets.token_urlsafe(12)
        html = self._template.render(
            lang=lang,
            code=error.code,
            app_name=app_name,
            t={**UI[lang], "title": title, "what": what, "meaning": meaning.format(app=app_name)},
            retry_url=retry_url,
            back_url=back_url,
            other_lang=other,
            other_lang_url=switch_url,
            nonce=nonce,
        )
        headers = {**PAGE_HEADERS, "Content-Security-Policy": CSP.format(nonce=nonce)}
        headers.update(error.headers)
        headers["Content-Language"] = lang
        return HTMLResponse(html, status_code=status, headers=headers)
