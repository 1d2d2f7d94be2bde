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
};

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
}
