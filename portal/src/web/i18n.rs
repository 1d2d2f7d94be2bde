//! German and English: the language of a request and every text the pages show.
//!
//! German is the product's first language (the manual's screens); English is the
//! second. A request's language comes from, in order: the `pls_lang` cookie set by
//! the language switch, the logged-in account's stored choice, `Accept-Language`,
//! and finally German.

/// A language of the portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "de" => Some(Lang::De),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The other language, for the switch link.
    pub fn other(self) -> Lang {
        match self {
            Lang::De => Lang::En,
            Lang::En => Lang::De,
        }
    }

    pub fn is_de(self) -> bool {
        self == Lang::De
    }

    /// Picks German or English from an `Accept-Language` header, honouring q-values.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut it = part.trim().split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("de") => Lang::De,
                Some("en") => Lang::En,
                _ => continue,
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    pub fn t(self) -> &'static Texts {
        match self {
            Lang::De => &DE,
            Lang::En => &EN,
        }
    }
}

/// Every fixed text of the account pages, in one language.
#[derive(Debug)]
pub struct Texts {
    pub product: &'static str,
    pub other_language_name: &'static str,
    pub imprint: &'static str,
    pub privacy: &'static str,
    pub login: &'static str,
    pub logout: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub password_repeat: &'static str,
    pub remember_me: &'static str,
    pub no_login: &'static str,
    pub register_now: &'static str,
    pub forgot_password: &'static str,
    pub reset_password: &'static str,
    pub registration: &'static str,
    pub login_data: &'static str,
    pub address: &'static str,
    pub company: &'static str,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub password_rule: &'static str,
    pub register_button: &'static str,
    pub registered_title: &'static str,
    pub registered_text: &'static str,
    pub verified_title: &'static str,
    pub verified_text: &'static str,
    pub link_invalid_title: &'static str,
    pub link_invalid_text: &'static str,
    pub resend_link: &'static str,
    pub resend_sent: &'static str,
    pub reset_request_text: &'static str,
    pub reset_request_button: &'static str,
    pub reset_requested: &'static str,
    pub new_password: &'static str,
    pub save_password: &'static str,
    pub password_changed: &'static str,
    pub err_required: &'static str,
    pub err_email: &'static str,
    pub err_password_rule: &'static str,
    pub err_password_mismatch: &'static str,
    pub err_email_taken: &'static str,
    pub err_login: &'static str,
    pub err_unverified: &'static str,
    pub err_throttled: &'static str,
    pub err_csrf: &'static str,
    pub err_too_long: &'static str,
    pub too_long_title: &'static str,
    pub err_field_too_long: &'static str,
    pub err_body_too_long: &'static str,
    pub err_unreadable_form: &'static str,
    pub err_unknown_field: &'static str,
    pub not_found_title: &'static str,
    pub not_found_text: &'static str,
    pub forbidden_title: &'static str,
    pub error_title: &'static str,
    pub error_text: &'static str,
    pub my_licenses: &'static str,
    pub no_licenses: &'static str,
    pub admin_area: &'static str,
    pub admin_failed_emails: &'static str,
    pub back_to_login: &'static str,
    pub required_note: &'static str,
    pub upgrade_intro: &'static str,
    pub upgrade_drivers_hint: &'static str,
    pub upgrade_new_total: &'static str,
    pub total_partial: &'static str,
    pub quote_ordered: &'static str,
    pub to_license: &'static str,
    pub hide_token: &'static str,
    pub copy_token: &'static str,
    pub copied: &'static str,
    pub order_license: &'static str,
    pub no_licenses_next: &'static str,
    pub already_verified_title: &'static str,
    pub already_verified_text: &'static str,
    pub mail_activated: &'static str,
    pub mail_activated_hard_dongle: &'static str,
    pub mail_file_after_dongle: &'static str,
    pub download_license: &'static str,
    pub show_license: &'static str,
    pub paid_confirm_title: &'static str,
    pub paid_confirm_text: &'static str,
    pub paid_confirm_button: &'static str,
    pub cancel: &'static str,
    pub paid_already: &'static str,
    pub paid_done_title: &'static str,
    pub paid_done_text: &'static str,
    pub paid_not_ordered: &'static str,
    pub back_to_admin: &'static str,
    pub mark_paid: &'static str,
    pub actor_admin: &'static str,
    pub actor_daemon: &'static str,
    pub actor_system: &'static str,
    pub actor_unknown_account: &'static str,
    pub daemon_settings: &'static str,
    pub daemon_settings_intro: &'static str,
    pub daemon_server: &'static str,
    pub daemon_other_names: &'static str,
    pub daemon_pin: &'static str,
    pub daemon_keys: &'static str,
    pub daemon_download: &'static str,
    pub daemon_show_file: &'static str,
    pub daemon_token_hint: &'static str,
}

pub static DE: Texts = Texts {
    product: "ProMoS License Server",
    other_language_name: "English",
    imprint: "Impressum",
    privacy: "Datenschutz",
    login: "Login",
    logout: "Abmelden",
    email: "Email",
    password: "Passwort",
    password_repeat: "Passwort wiederholen",
    remember_me: "Angemeldet bleiben",
    no_login: "Keine Login-Daten?",
    register_now: "Jetzt kostenlos registrieren!",
    forgot_password: "Passwort vergessen?",
    reset_password: "Passwort zurücksetzen",
    registration: "Registrierung",
    login_data: "Login-Daten",
    address: "Adresse",
    company: "Firma",
    first_name: "Vorname",
    last_name: "Nachname",
    password_rule: "Mindestens 10 Zeichen, davon mindestens ein Buchstabe und eine Ziffer.",
    register_button: "Registrieren",
    registered_title: "Bitte bestätigen Sie Ihre Email-Adresse",
    registered_text: "Wir haben Ihnen eine Email mit einem Link geschickt. Klicken Sie auf den Link, um Ihre Email-Adresse zu verifizieren und die Registrierung abzuschließen.",
    verified_title: "Email-Adresse bestätigt",
    verified_text: "Vielen Dank! Ihre Registrierung ist abgeschlossen. Sie können sich jetzt anmelden.",
    link_invalid_title: "Link ungültig",
    link_invalid_text: "Dieser Link ist abgelaufen oder wurde bereits verwendet. Sie können einen neuen Link anfordern.",
    resend_link: "Neuen Link anfordern",
    resend_sent: "Falls ein unbestätigtes Konto mit dieser Adresse existiert, haben wir einen neuen Link geschickt.",
    reset_request_text: "Geben Sie Ihre Email-Adresse ein. Wir schicken Ihnen einen Link, mit dem Sie ein neues Passwort setzen können.",
    reset_request_button: "Link senden",
    reset_requested: "Falls ein Konto mit dieser Adresse existiert, haben wir eine Email mit einem Link geschickt.",
    new_password: "Neues Passwort",
    save_password: "Passwort speichern",
    password_changed: "Ihr Passwort wurde geändert. Alle bisherigen Anmeldungen wurden beendet; bitte melden Sie sich neu an.",
    err_required: "Bitte füllen Sie dieses Feld aus.",
    err_email: "Bitte geben Sie eine gültige Email-Adresse ein.",
    err_password_rule: "Das Passwort erfüllt die Regel nicht.",
    err_password_mismatch: "Die Passwörter stimmen nicht überein.",
    err_email_taken: "Für diese Email-Adresse existiert bereits ein Konto. Melden Sie sich an oder setzen Sie das Passwort zurück.",
    err_login: "Email oder Passwort ist falsch.",
    err_unverified: "Ihre Email-Adresse ist noch nicht bestätigt. Bitte klicken Sie auf den Link in der Email, die wir Ihnen geschickt haben.",
    err_throttled: "Zu viele fehlgeschlagene Anmeldeversuche. Bitte versuchen Sie es in {minutes} Minuten erneut.",
    err_csrf: "Das Formular ist abgelaufen. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
    err_too_long: "Die Eingabe ist zu lang.",
    too_long_title: "Eingabe zu lang",
    err_field_too_long: "Die Eingabe im Feld „{field}“ ist zu lang (höchstens {max} Zeichen). Bitte kürzen Sie sie und senden Sie das Formular noch einmal.",
    err_body_too_long: "Die Eingabe ist zu lang. Bitte kürzen Sie die langen Felder und senden Sie das Formular noch einmal.",
    err_unknown_field: "Das Formular enthält ein Feld, das es nicht hat, oder ein Feld doppelt: „{field}“. Es wurde nichts geändert. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
    err_unreadable_form: "Das Formular konnte nicht gelesen werden. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
    not_found_title: "Nicht gefunden",
    not_found_text: "Diese Seite gibt es nicht, oder Sie haben keinen Zugriff darauf.",
    forbidden_title: "Anfrage abgelehnt",
    error_title: "Fehler",
    error_text: "Etwas ist schiefgegangen. Bitte versuchen Sie es später noch einmal.",
    my_licenses: "Meine Lizenzen",
    no_licenses: "Sie haben noch keine Lizenzen.",
    admin_area: "Administration",
    admin_failed_emails: "Nicht zugestellte Emails",
    back_to_login: "Zum Login",
    required_note: "Mit * markierte Felder sind Pflichtfelder.",
    upgrade_intro: "Die Felder zeigen, was die Lizenz heute enthält. Tragen Sie bei jedem Treiber die neue Gesamtzahl ein. Anzahlen können nur erhöht werden; berechnet wird nur, was hinzukommt.",
    upgrade_drivers_hint: "Neue Gesamtzahl je Treiber; der Preis zeigt, was hinzukommt.",
    upgrade_new_total: "Neue Gesamtzahl",
    total_partial: "(ohne die Zeilen mit Fehlern)",
    quote_ordered: "Bestellt",
    to_license: "Zur Lizenz",
    hide_token: "Token verbergen",
    copy_token: "Kopieren",
    copied: "Kopiert",
    order_license: "Lizenz bestellen",
    no_licenses_next: "Bestellen Sie eine Lizenz oder holen Sie zuerst ein Angebot ein.",
    already_verified_title: "Email-Adresse bereits bestätigt",
    already_verified_text: "Ihre Email-Adresse ist bereits bestätigt; der Link wird nicht mehr gebraucht. Sie können sich anmelden.",
    mail_activated: "Ihre Bestellung {id} ist freigeschaltet. Die Lizenz {license} enthält jetzt die bestellten Services; ProMoS erhält sie bei der nächsten Prüfung.",
    mail_activated_hard_dongle: "Ihre Bestellung {id} ist freigeschaltet. Die Lizenz {license} ist eine HardDongle-Lizenz: ProMoS prüft sie nicht über das Internet, sondern liest die Lizenzdatei. Laden Sie die Datei herunter und kopieren Sie sie als promos.json in das Verzeichnis ..\\lic Ihres Projekts.",
    mail_file_after_dongle: "Die Datei steht bereit, sobald der Dongle ausgeliefert und seine Nummer im Lizenzserver eingetragen ist.",
    download_license: "Lizenz herunterladen",
    show_license: "Lizenz anzeigen",
    paid_confirm_title: "Als bezahlt markieren?",
    paid_confirm_text: "Die Bestellung {id} wird als bezahlt markiert: die Lizenz {license} wird freigeschaltet, und der Kunde erhält eine Email.",
    paid_confirm_button: "Ja, als bezahlt markieren",
    cancel: "Abbrechen",
    paid_already: "Diese Bestellung ist bereits bezahlt und freigeschaltet.",
    paid_done_title: "Als bezahlt markiert",
    paid_done_text: "Die Bestellung {id} ist bezahlt und freigeschaltet; die Lizenz {license} enthält jetzt die bestellten Services. Die Email an {customer} ist unterwegs.",
    paid_not_ordered: "Diese Mutation ist nicht (mehr) als bestellt markiert; sie wurde bereits aktiviert oder gelöscht.",
    back_to_admin: "Zur Administration",
    mark_paid: "Als bezahlt markieren",
    actor_admin: "Admin",
    actor_daemon: "Daemon",
    actor_system: "System",
    actor_unknown_account: "Konto",
    daemon_settings: "Daemon-Einstellungen",
    daemon_settings_intro: "Diese Einstellungen braucht der Lizenzdienst promos-licd auf dem ProMoS-Rechner. Laden Sie sie als promos-licd.toml herunter und speichern Sie die Datei dort als /etc/promos-licd/promos-licd.toml. Danach gibt der Standort bei „promos-licd setup“ nur noch das Token ein.",
    daemon_server: "Lizenzserver",
    daemon_other_names: "auch erreichbar als",
    daemon_pin: "Zertifikat (SHA-256)",
    daemon_keys: "Schlüssel des Servers",
    daemon_download: "promos-licd.toml herunterladen",
    daemon_show_file: "Datei anzeigen",
    daemon_token_hint: "Das Token steht nicht in der Datei: es wird einmal bei der Aktivierung eingegeben und nie gespeichert.",
};

pub static EN: Texts = Texts {
    product: "ProMoS License Server",
    other_language_name: "Deutsch",
    imprint: "Imprint",
    privacy: "Privacy",
    login: "Login",
    logout: "Log out",
    email: "Email",
    password: "Password",
    password_repeat: "Repeat password",
    remember_me: "Remember me",
    no_login: "No login data?",
    register_now: "Register now for free!",
    forgot_password: "Forgot your password?",
    reset_password: "Reset password",
    registration: "Registration",
    login_data: "Login data",
    address: "Address",
    company: "Company",
    first_name: "First name",
    last_name: "Last name",
    password_rule: "At least 10 characters, including at least one letter and one digit.",
    register_button: "Register",
    registered_title: "Please confirm your email address",
    registered_text: "We have sent you an email with a link. Click the link to verify your email address and complete the registration.",
    verified_title: "Email address confirmed",
    verified_text: "Thank you! Your registration is complete. You can log in now.",
    link_invalid_title: "Link not valid",
    link_invalid_text: "This link has expired or has already been used. You can ask for a new one.",
    resend_link: "Send a new link",
    resend_sent: "If an unconfirmed account with this address exists, we have sent a new link.",
    reset_request_text: "Enter your email address. We will send you a link to set a new password.",
    reset_request_button: "Send link",
    reset_requested: "If an account with this address exists, we have sent an email with a link.",
    new_password: "New password",
    save_password: "Save password",
    password_changed: "Your password has been changed. All previous logins have been ended; please log in again.",
    err_required: "Please fill in this field.",
    err_email: "Please enter a valid email address.",
    err_password_rule: "The password does not meet the rule.",
    err_password_mismatch: "The passwords do not match.",
    err_email_taken: "An account with this email address already exists. Log in or reset the password.",
    err_login: "Email or password is wrong.",
    err_unverified: "Your email address is not confirmed yet. Please click the link in the email we sent you.",
    err_throttled: "Too many failed login attempts. Please try again in {minutes} minutes.",
    err_csrf: "The form has expired. Please reload the page and try again.",
    err_too_long: "The entry is too long.",
    too_long_title: "Input too long",
    err_field_too_long: "The input in the field “{field}” is too long (at most {max} characters). Please shorten it and send the form again.",
    err_body_too_long: "The input is too long. Please shorten the long fields and send the form again.",
    err_unknown_field: "The form carries a field it does not have, or a field twice: “{field}”. Nothing was changed. Please reload the page and try again.",
    err_unreadable_form: "The form could not be read. Please reload the page and try again.",
    not_found_title: "Not found",
    not_found_text: "This page does not exist, or you have no access to it.",
    forbidden_title: "Request refused",
    error_title: "Error",
    error_text: "Something went wrong. Please try again later.",
    my_licenses: "My licenses",
    no_licenses: "You have no licenses yet.",
    admin_area: "Administration",
    admin_failed_emails: "Undelivered emails",
    back_to_login: "To the login",
    required_note: "Fields marked with * are required.",
    upgrade_intro: "The fields show what the license holds today. Enter each driver's new total. Counts can only be increased; only what is added is charged.",
    upgrade_drivers_hint: "The new total per driver; the price shows what is added.",
    upgrade_new_total: "New total",
    total_partial: "(without the rows with errors)",
    quote_ordered: "Ordered",
    to_license: "Show license",
    hide_token: "Hide token",
    copy_token: "Copy",
    copied: "Copied",
    order_license: "Order license",
    no_licenses_next: "Order a license, or get a quote first.",
    already_verified_title: "Email address already confirmed",
    already_verified_text: "Your email address is already confirmed; the link is no longer needed. You can log in.",
    mail_activated: "your order {id} is activated. License {license} now holds the services you ordered; ProMoS receives them at its next check.",
    mail_activated_hard_dongle: "your order {id} is activated. License {license} is a hardware-dongle license: ProMoS does not check it over the internet but reads the license file. Download the file and copy it as promos.json into the ..\\lic directory of your project.",
    mail_file_after_dongle: "The file is available once the dongle has been delivered and its number entered in the license server.",
    download_license: "Download license",
    show_license: "Show the license",
    paid_confirm_title: "Mark as paid?",
    paid_confirm_text: "Order {id} will be marked as paid: license {license} is activated and the customer receives an email.",
    paid_confirm_button: "Yes, mark as paid",
    cancel: "Cancel",
    paid_already: "This order is already paid and activated.",
    paid_done_title: "Marked as paid",
    paid_done_text: "Order {id} is paid and activated; license {license} now holds the ordered services. The email to {customer} is on its way.",
    paid_not_ordered: "This mutation is not (or no longer) ordered; it was already activated or deleted.",
    back_to_admin: "To the administration",
    mark_paid: "Mark paid",
    actor_admin: "Admin",
    actor_daemon: "Daemon",
    actor_system: "System",
    actor_unknown_account: "Account",
    daemon_settings: "Daemon settings",
    daemon_settings_intro: "The license daemon promos-licd on the ProMoS computer needs these settings. Download them as promos-licd.toml and save the file there as /etc/promos-licd/promos-licd.toml. Then, in “promos-licd setup”, the site enters only the token.",
    daemon_server: "License server",
    daemon_other_names: "also reachable as",
    daemon_pin: "Certificate (SHA-256)",
    daemon_keys: "Server keys",
    daemon_download: "Download promos-licd.toml",
    daemon_show_file: "Show the file",
    daemon_token_hint: "The token is not in the file: it is entered once, at the activation, and never stored.",
};

/// A name as German and English readers sort it: case and umlauts folded
/// (Ä, Ö, Ü as A, O, U; ß as ss), so "Österreich" sorts among the O.
pub fn sort_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match c {
            'ä' | 'à' | 'á' | 'â' => out.push('a'),
            'ö' | 'ò' | 'ó' | 'ô' => out.push('o'),
            'ü' | 'ù' | 'ú' | 'û' => out.push('u'),
            'é' | 'è' | 'ê' => out.push('e'),
            'ß' => out.push_str("ss"),
            c => out.push(c),
        }
    }
    out
}

/// An audit trail event (`license.created`) as the admin pages show it; a code
/// without a translation shows as itself.
pub fn audit_event(code: &str, lang: Lang) -> &str {
    let (de, en) = match code {
        "account.created" => ("Konto angelegt", "Account created"),
        "account.trusted" => ("Als vertrauenswürdig markiert", "Marked trusted"),
        "account.untrusted" => ("Nicht mehr vertrauenswürdig", "No longer trusted"),
        "account.admin_granted" => ("Admin-Rechte erteilt", "Admin rights granted"),
        "account.admin_revoked" => ("Admin-Rechte entzogen", "Admin rights revoked"),
        "account.verified" | "email verified" | "verified" => {
            ("Email-Adresse bestätigt", "Email address confirmed")
        }
        "email verified by admin" => (
            "Email-Adresse vom Admin bestätigt",
            "Email address confirmed by an admin",
        ),
        "password reset" => ("Passwort zurückgesetzt", "Password reset"),
        "license.created" => ("Lizenz angelegt", "License created"),
        "license.data_edited" => ("Lizenzdaten bearbeitet", "License data edited"),
        "license.dongle_serial" => ("Dongle-Nummer eingetragen", "Dongle serial entered"),
        "mutation.quoted" => ("Angebot erstellt", "Quote created"),
        "mutation.ordered" => ("Bestellt", "Ordered"),
        "mutation.activated" => ("Freigeschaltet", "Activated"),
        "mutation.deleted" => ("Angebot gelöscht", "Quote deleted"),
        "mutation.expired" => ("Angebot abgelaufen", "Quote expired"),
        "binding.activated" => ("An Rechner gebunden", "Bound to a host"),
        "binding.reset" => ("Zurückgesetzt", "Reset"),
        "binding.deactivated" => ("Rechner abgemeldet", "Host deactivated"),
        "grant.issued" => ("Lizenz signiert", "Grant signed"),
        _ => return code,
    };
    if lang.is_de() {
        de
    } else {
        en
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_supported_language() {
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,de;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("fr-CH, de;q=0.7, en;q=0.3"),
            Some(Lang::De)
        );
        assert_eq!(
            Lang::from_accept_language("en;q=0.2, de-CH"),
            Some(Lang::De)
        );
        assert_eq!(Lang::from_accept_language("fr, it"), None);
        assert_eq!(Lang::from_accept_language(""), None);
    }

    #[test]
    fn umlauts_sort_with_their_base_letter() {
        let mut names = vec!["Polen", "Österreich", "Niederlande", "Dänemark", "Belgien"];
        names.sort_by_key(|n| sort_key(n));
        assert_eq!(
            names,
            vec!["Belgien", "Dänemark", "Niederlande", "Österreich", "Polen"]
        );
    }

    #[test]
    fn audit_events_are_translated() {
        assert_eq!(audit_event("license.created", Lang::De), "Lizenz angelegt");
        assert_eq!(audit_event("license.created", Lang::En), "License created");
        assert_eq!(audit_event("something.new", Lang::De), "something.new");
    }
}
