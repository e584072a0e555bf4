//! The actions that delete accounts, domains or data, or write equipment off: what each one
//! does, in the words the confirmation page and the CLI prompt show before asking.

/// An action that cannot be undone, or undoes a kit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destructive {
    /// Opening the hand-back of a ready or delivered kit.
    StartHandback,
    /// Calling a kit off before its provisioning began.
    Cancel,
    /// Calling a kit off once its provisioning began: what exists is wound down.
    CancelProvisioned,
    /// Skipping a step of a playbook.
    SkipStep,
    /// Writing off an item that will not come back.
    WriteOff,
    /// Setting new one-time passwords on every account of a kit.
    ReissueCredentials,
}

impl Destructive {
    /// The question asked, as a page title.
    pub fn title_fr(self) -> &'static str {
        match self {
            Self::StartHandback => "Ouvrir la restitution du kit ?",
            Self::Cancel => "Annuler la demande de kit ?",
            Self::CancelProvisioned => "Annuler le kit en cours de préparation ?",
            Self::SkipStep => "Ignorer cette étape ?",
            Self::WriteOff => "Passer cet équipement en perte ?",
            Self::ReissueCredentials => "Délivrer de nouveaux mots de passe ?",
        }
    }

    /// What happens, one consequence per line.
    pub fn consequences_fr(self) -> &'static [&'static str] {
        match self {
            Self::StartHandback => &[
                "Les comptes de secours sont désactivés et leurs sessions révoquées dans les minutes qui suivent : les agents ne peuvent plus travailler sur le kit.",
                "Une fois les données récupérées par la commune et les équipements réceptionnés, l'espace collaboratif, les comptes et le domaine de secours sont supprimés définitivement.",
                "Le matériel réservé mais jamais remis retourne au stock.",
                "La restitution ne peut pas être annulée.",
            ],
            Self::Cancel => {
                &["La demande est close : le kit ne sera pas préparé.", "Le matériel réservé retourne au stock."]
            }
            Self::CancelProvisioned => &[
                "La préparation s'arrête : les comptes déjà créés sont désactivés et leurs sessions révoquées tout de suite.",
                "Après récupération des données par la commune, l'espace collaboratif, les comptes et le domaine de secours sont supprimés définitivement.",
                "Le matériel réservé retourne au stock.",
                "L'annulation ne peut pas être défaite : une nouvelle demande serait nécessaire.",
            ],
            Self::SkipStep => &[
                "L'étape est marquée « ignorée » et les étapes qui en dépendent s'exécutent sans elle.",
                "Ce qu'elle devait faire (compte, domaine, document, vérification) ne sera pas fait : il faudra le faire à la main.",
                "Le motif est inscrit au journal d'audit.",
            ],
            Self::WriteOff => &[
                "L'équipement est retiré du prêt et enregistré comme perdu : il ne reviendra pas dans le stock.",
                "Le motif (vol, casse, perte) est inscrit au journal d'audit et au procès-verbal de restitution.",
            ],
            Self::ReissueCredentials => &[
                "Chaque compte du kit reçoit un nouveau mot de passe à usage unique : les mots de passe actuels cessent de fonctionner.",
                "Les agents devront se reconnecter avec leur nouvelle fiche et choisir un nouveau mot de passe.",
                "Les nouvelles fiches ne se téléchargent qu'une fois : imprimez-les aussitôt.",
                "La nouvelle délivrance et son motif sont inscrits au journal d'audit.",
            ],
        }
    }

    /// The label of the button that does it.
    pub fn button_fr(self) -> &'static str {
        match self {
            Self::StartHandback => "Ouvrir la restitution",
            Self::Cancel => "Annuler la demande",
            Self::CancelProvisioned => "Annuler le kit et le démanteler",
            Self::SkipStep => "Ignorer l'étape",
            Self::WriteOff => "Passer en perte",
            Self::ReissueCredentials => "Réinitialiser les mots de passe",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_says_what_it_does() {
        for d in [
            Destructive::StartHandback,
            Destructive::Cancel,
            Destructive::CancelProvisioned,
            Destructive::SkipStep,
            Destructive::WriteOff,
            Destructive::ReissueCredentials,
        ] {
            assert!(d.title_fr().ends_with('?'), "{d:?}");
            assert!(!d.consequences_fr().is_empty(), "{d:?}");
            assert!(!d.button_fr().is_empty(), "{d:?}");
        }
        assert!(Destructive::CancelProvisioned.consequences_fr().iter().any(|c| c.contains("désactivés")));
    }
}
