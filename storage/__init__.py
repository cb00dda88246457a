"""Storage: the only package that knows SQLModel/SQLAlchemy.

It holds pseudonyms and ciphertext, never a raw phone number, chat id or name. Functions are
`verb_noun(session, *, ...)` with keyword-only arguments and never commit: the caller owns the
transaction, so an audit row and the change it records land together.
"""
