FROM {{base}}
COPY . /ctx/
