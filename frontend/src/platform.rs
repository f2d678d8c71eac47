//! Platform strings (`os/arch[/variant]`) and the host platform.
