"""action_plugins/ and callback_plugins/."""
