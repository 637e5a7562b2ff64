"""Bidding: from calibrated pCTR/pCVR to a price, under budgets. Pure: no I/O, no Redis, no MLflow.

goals       value of an impression (CPM) per campaign goal
strategies  BidStrategy implementations and bid_one / bid_array, the one bid function
fitting     strategy parameters fitted on a training window
winrate     censored (Kaplan-Meier / Turnbull) win-rate model per context segment
shading     first-price shading on a win curve
pacing      PID pacing arithmetic and the paced-replay loop
auction     how a logged auction resolves and where a budget runs out
campaigns   the campaigns TOML schema
targeting   who a campaign may bid on (targeting, flight, frequency cap), compiled
creative_fit  which creatives fit an impression slot (format, size, badv, bcat)
rules       compiled if / else-if / else bid rules
replay      offline auction replay over logs
"""
