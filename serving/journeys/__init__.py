"""Behaviour-triggered journeys (issue 18): declarations (:mod:`.spec`), triggers over the
events store, channel and content choice by the models, one contact policy across
journeys, holdouts, the decision log and the outbox per channel. See docs/journeys.md."""
